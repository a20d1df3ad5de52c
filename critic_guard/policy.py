"""The intervention policy: given a verdict and where the run stands, intervene or not, and with what text.

Defaults follow the paper (arXiv 2602.03338): threshold ``tau = 0.6``, at most 3 interventions per run, and the
recommended ``min_step = 2`` (never intervene in steps 0-1, where a rollback mostly disrupts runs that would have
succeeded). The policy is pure and cheap: the guard calls it on every step.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import string
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from critic_guard.types import Action, Verdict

__all__ = ["TEMPLATE_FIELDS", "Decision", "Policy", "Reason", "reject_unknown_fields"]

TEMPLATE_FIELDS = frozenset({"p_fail", "rationale", "step"})
"""The fields a feedback template may use (``str.format`` syntax, e.g. ``{p_fail:.2f}``)."""

# Default feedback per action; the second variant adds the critic's rationale when it gave one.
_ROLLBACK_TEXT = (
    "Your previous step was withdrawn before it ran: a reviewer estimated a {p_fail:.2f} probability that this "
    "approach leads the task to fail. Reconsider and take a different next step."
)
_APPEND_TEXT = (
    "Warning from a reviewer: after your last step it estimates a {p_fail:.2f} probability that the task will "
    "fail. Check your progress and change course if needed."
)
_DEFAULT_TEMPLATES: dict[Action, tuple[str, str]] = {
    Action.ROLLBACK: (_ROLLBACK_TEXT, _ROLLBACK_TEXT + " Reviewer's note: {rationale}"),
    Action.APPEND: (_APPEND_TEXT, _APPEND_TEXT + " Reviewer's note: {rationale}"),
}


class Reason(StrEnum):
    """Why a decision came out the way it did (stored with every step; compares equal to its string)."""

    FLAG = "flag"  # p_fail >= tau at a step where intervening is allowed
    BELOW_TAU = "below_tau"
    BEFORE_MIN_STEP = "before_min_step"
    BUDGET_EXHAUSTED = "budget_exhausted"
    COOLDOWN = "cooldown"
    OBSERVE = "observe"  # flagged, but the guard is in observe mode
    CONTROL_ARM = "control_arm"  # flagged, but this arm may not act (pilot / auto modes)
    GUARD_DISABLED = "guard_disabled"  # flagged on the treatment arm, but the AUTO lifecycle disabled intervention
    FORK = "fork"  # a shadow branch's fork step: the decision planned for its arm (critic_guard.fork_plan)
    MODE_OFF = "mode_off"
    CRITIC_ERROR = "critic_error"


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer for one step.

    ``flagged`` is a "flag" (docs/pilot-design.md, "Words"): ``p_fail >= tau`` where the policy allows intervening.
    ``action`` is what the guard does (NONE when not flagged or not allowed to act). ``feedback`` is the text shown to
    the agent, None for NONE and for silent interventions. ``reason`` is a short machine word (see :class:`Reason`).
    """

    flagged: bool
    action: Action
    feedback: str | None
    reason: str


def reject_unknown_fields(model: type[BaseModel], data: Any) -> Any:
    """A ``mode="before"`` validator body: reject unknown keys with a did-you-mean hint.

    Pydantic's ``extra="forbid"`` already rejects them; this only makes the message say what was probably meant.
    """
    if isinstance(data, dict):
        known = set(model.model_fields)
        for key in data:
            if isinstance(key, str) and key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(sorted(known))}"
                raise ValueError(f"unknown {model.__name__} field {key!r}{hint}")
    return data


class Policy(BaseModel):
    """When to intervene and how. Frozen: its :meth:`fingerprint` is part of the guard key."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    tau: float = Field(default=0.6, ge=0.0, le=1.0, description="flag when p_fail >= tau")
    min_step: int = Field(default=2, ge=0, description="never intervene before this 0-based step")
    max_interventions: int = Field(default=3, ge=0, description="intervention budget per run")
    cooldown: int = Field(default=0, ge=0, description="steps after an intervention during which no new one happens")
    action: Action = Action.ROLLBACK
    feedback: bool = Field(default=True, description="False = silent variant: intervene without telling the agent why")
    template: str | None = Field(default=None, description="feedback text; str.format fields: p_fail, rationale, step")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return reject_unknown_fields(cls, data)

    @field_validator("action")
    @classmethod
    def _acting(cls, action: Action) -> Action:
        if action is Action.NONE:
            raise ValueError("Policy.action must be 'rollback' or 'append'; to never act use mode='observe'")
        return action

    @field_validator("template")
    @classmethod
    def _valid_template(cls, template: str | None) -> str | None:
        if template is None:
            return None
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ValueError(f"feedback template is not valid str.format syntax: {exc}") from exc
        bad = sorted(fields - TEMPLATE_FIELDS)
        if bad:
            raise ValueError(
                f"feedback template uses unknown field(s) {bad}; allowed: {sorted(TEMPLATE_FIELDS)} "
                "(use {{ and }} for literal braces)"
            )
        try:
            template.format(p_fail=0.5, rationale="r", step=1)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"feedback template cannot be formatted: {exc}") from exc
        return template

    def decide(
        self, verdict: Verdict, *, step: int, interventions: int, last_intervention_step: int | None
    ) -> Decision:
        """Decide for one step. ``interventions`` counts this run's interventions so far (the caller keeps it, since
        it lives in the agent's state and must survive checkpoints and forks)."""
        if step < 0 or interventions < 0:
            raise ValueError(f"step and interventions must be >= 0, got step={step}, interventions={interventions}")
        if verdict.p_fail < self.tau:
            return Decision(False, Action.NONE, None, Reason.BELOW_TAU)
        if step < self.min_step:
            return Decision(False, Action.NONE, None, Reason.BEFORE_MIN_STEP)
        if interventions >= self.max_interventions:
            return Decision(False, Action.NONE, None, Reason.BUDGET_EXHAUSTED)
        if self.cooldown and last_intervention_step is not None and step - last_intervention_step <= self.cooldown:
            return Decision(False, Action.NONE, None, Reason.COOLDOWN)
        return Decision(True, self.action, self.feedback_text(verdict, step=step), Reason.FLAG)

    def feedback_text(self, verdict: Verdict, *, step: int) -> str | None:
        """The text shown to the agent for an intervention at ``step`` (None in the silent variant)."""
        if not self.feedback:
            return None
        rationale = (verdict.rationale or "").strip()
        template = self.template or _DEFAULT_TEMPLATES[self.action][bool(rationale)]
        return template.format(p_fail=verdict.p_fail, rationale=rationale, step=step).strip()

    def fingerprint(self) -> str:
        """A stable 8-hex-digit hash of this configuration (equal configs give equal fingerprints)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]
