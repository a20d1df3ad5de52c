"""``GuardConfig``: everything that configures a :class:`~critic_guard.guard.CriticGuard`, validated up front.

Pydantic v2 with ``extra="forbid"``: a typo such as ``polcy=`` is an error with a did-you-mean hint, not a silently
ignored setting.

Only ``agent_name``, the critic's name and the policy make up the guard key (docs/lifecycle.md, "The guard key"):
changing one of them starts fresh evidence. The pilot and lifecycle knobs (``serve``, ``design``, ``alpha``,
``alpha_per_side``, ``max_pilot_pairs``, ``on_budget_spent``, ``shadow_fraction``, ``aa_fraction``, ``lifecycle_ttl_s``)
and the fault and capacity knobs (``store_wait_s``, ``store_retry_s``, ``background_workers``, ``background_queue``) do
not: they say how evidence is collected and acted on, not what is being tested, so replicas with different knobs still
share one record (docs/lifecycle.md). Neither do ``capture_content`` and ``task_fields``: they say what is kept at rest
(docs/telemetry.md, "What the store keeps").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from critic_guard.policy import Policy, reject_unknown_fields
from critic_guard.types import Arm, Mode

__all__ = ["DEFAULT_STORE_URL", "GuardConfig"]

DEFAULT_STORE_URL = "sqlite:///critic_guard.db"


class GuardConfig(BaseModel):
    """Configuration of one guard. Frozen, because the guard key is derived from it."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    agent_name: str = Field(default="agent", min_length=1, description="first part of the guard key")
    mode: Mode = Field(default=Mode.OBSERVE, description="off | observe | pilot | on | auto")
    policy: Policy = Field(default_factory=Policy)
    critic_timeout_s: float | None = Field(
        default=5.0,
        gt=0.0,
        description="seconds before a critic call fails open; None = no timeout (critic runs inline)",
    )
    critic_workers: int = Field(default=8, ge=1, le=256, description="threads for sync critics run under the timeout")
    store: str | None = Field(default=DEFAULT_STORE_URL, description="store URL; None persists nothing")
    capture_content: bool = Field(
        default=False,
        description="record message content in traces and in the store (GenAI convention: off); see docs/telemetry.md",
    )
    task_fields: frozenset[str] | None = Field(
        default=None,
        description="task fields the store keeps besides the ids (task_id, id, pilot_attempt); None: all of them "
        "with content capture on, none with it off",
    )
    serve: Arm = Field(default=Arm.CONTROL, description="the arm production runs follow during a pilot")
    design: Literal["fork", "full"] = Field(
        default="fork", description="fork: both arms continue from the first flag; full: two full runs per task"
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="monitor level: any wrong automatic proof (harm or benefit) has probability at most alpha, "
        "ever (alpha/2 per e-process); fixed when a guard key's evidence starts",
    )
    alpha_per_side: bool = Field(
        default=False,
        description="give each e-process alpha instead of alpha/2: faster proofs, but a wrong harm or benefit "
        "proof then has probability up to 2*alpha in total (docs/statistics.md); fixed with the evidence",
    )
    max_pilot_pairs: int | None = Field(
        default=None,
        ge=1,
        description="AUTO: pilot pairs after which a pilot without proof ends inconclusive; None = no budget",
    )
    on_budget_spent: Literal["serve_control", "disable", "keep_piloting"] = Field(
        default="serve_control",
        description="AUTO, after an inconclusive pilot budget: serve_control (stay in pilot, serve control, fork "
        "nothing; not a harm verdict), disable, or keep_piloting (docs/lifecycle.md)",
    )
    shadow_fraction: float = Field(
        default=0.1, ge=0.0, le=1.0, description="AUTO, enabled: share of flagged runs that still fork a shadow control"
    )
    aa_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of flagged runs that also fork an A/A shadow (rerun noise)"
    )
    store_wait_s: float = Field(
        default=0.25,
        gt=0.0,
        le=60.0,
        description="seconds a store call on the user's path may wait for a busy or unreachable store before the "
        "guard fails open (a run, outcome or pair write is then retried in the background, docs/faults.md)",
    )
    store_retry_s: float = Field(
        default=60.0,
        gt=0.0,
        description="seconds a run, outcome or pair write is retried in the background before it counts as lost",
    )
    background_workers: int = Field(
        default=8,
        ge=1,
        le=256,
        description="threads judging sync agents' steps off the user's path (mode observe, an arm the guard does not "
        'act on; docs/pilot-design.md, "Judging off the user\'s path")',
    )
    background_queue: int = Field(
        default=1024,
        ge=1,
        description="steps judged off the user's path that may wait at once; a step that finds the queue full waits "
        "for a place (back-pressure, never a drop)",
    )
    lifecycle_ttl_s: float = Field(
        default=1.0,
        ge=0.0,
        description="seconds the guard caches the lifecycle state between store reads (0 = read every time)",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return reject_unknown_fields(cls, data)

    @field_validator("agent_name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if name != name.strip() or "/" in name:
            raise ValueError(
                f"agent_name must not contain '/' or surrounding spaces (it is part of the guard key): {name!r}"
            )
        return name

    @field_validator("task_fields")
    @classmethod
    def _field_names(cls, fields: frozenset[str] | None) -> frozenset[str] | None:
        if fields is not None and any(not name for name in fields):
            raise ValueError("task_fields must be non-empty field names")
        return fields

    @field_validator("store")
    @classmethod
    def _valid_store_url(cls, url: str | None) -> str | None:
        if url is not None:
            # imported here: the store package imports the lifecycle, which reads the config
            from critic_guard.store.urls import parse_store_url

            parse_store_url(url)
        return url
