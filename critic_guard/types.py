"""The shared vocabulary of critic-guard (docs/pilot-design.md, "Words").

Everything here is framework-neutral: a trajectory is a list of OpenAI-style chat messages, so an integration for
any agent framework only has to convert its messages to and from this shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from numbers import Real
from typing import Any, TypeAlias

Message: TypeAlias = dict[str, Any]
"""One OpenAI-style chat message.

Keys: ``role`` (``system | user | assistant | tool``), ``content`` (str), and for assistant messages an optional
``tool_calls`` list of ``{"id": str, "name": str, "arguments": dict}``; tool messages carry ``tool_call_id``.
Integrations may add ``id`` (their own message id) and ``name``.
"""


class Action(StrEnum):
    """What the guard does after judging a step."""

    NONE = "none"
    ROLLBACK = "rollback"  # drop the proposed step before its tools run and ask the model again
    APPEND = "append"  # let the step run, then show the agent a warning


class Arm(StrEnum):
    """Which branch of a pair a run belongs to."""

    CONTROL = "control"  # no intervention
    TREATMENT = "treatment"  # the intervention policy


class Mode(StrEnum):
    """How much the guard is allowed to do (docs/critics-and-policy.md, "Modes")."""

    OFF = "off"  # nothing: the critic is not even called
    OBSERVE = "observe"  # the critic runs and is recorded, never acts
    PILOT = "pilot"  # forks at the first flag, serves one arm, the other runs in shadow
    ON = "on"  # always intervene when the policy flags
    AUTO = "auto"  # lifecycle: pilot -> enabled / disabled from the sequential monitor


@dataclass(frozen=True, slots=True)
class Verdict:
    """A critic's prediction that the run will fail, made after one step.

    ``p_fail`` is a probability in [0, 1]; ``label`` is an optional discrete label (e.g. "fail" / "ok") and
    ``rationale`` an optional human-readable reason, both shown to the agent only if the feedback template uses them.

    A verdict checks itself when it is made, so a malformed one cannot exist: ``p_fail`` must be a finite real number
    in [0, 1] (numpy floats are fine; it is stored as a ``float``; a bool is refused: is ``True`` "fails" or
    "fine"?), ``rationale`` and ``label`` a ``str`` or None. A critic that builds a bad verdict raises inside the
    critic, which the guard records as a critic error (docs/critics-and-policy.md).
    """

    p_fail: float
    rationale: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        p: object = self.p_fail
        if isinstance(p, bool) or not isinstance(p, Real):
            raise TypeError(f"Verdict.p_fail must be a number, got {type(p).__name__}")
        p = float(p)
        if not math.isfinite(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Verdict.p_fail must be in [0, 1], got {p!r}")
        object.__setattr__(self, "p_fail", p)
        for name in ("rationale", "label"):
            text = getattr(self, name)
            if text is not None and type(text) is not str:
                if not isinstance(text, str):
                    raise TypeError(f"Verdict.{name} must be a str or None, got {type(text).__name__}")
                object.__setattr__(self, name, str(text))  # a str subclass (numpy.str_) as a plain str


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a critic sees: the trajectory prefix up to and including the step being judged.

    ``messages[-1]`` is the assistant message the model just proposed (its tool calls have not run yet).
    ``step`` is the 0-based index of that model step within the run (retries after a ROLLBACK keep the index).
    ``messages`` is a read-only sequence (a tuple, or a lazy view that an integration converts on first use, so
    that a critic pays only for what it reads); ``tuple(ctx.messages)`` gives a tuple.
    """

    run_id: str
    step: int
    messages: Sequence[Message]
    task: Mapping[str, Any] = field(default_factory=dict)
    arm: Arm = Arm.CONTROL

    @property
    def proposed(self) -> Message:
        """The assistant message under judgement."""
        return self.messages[-1]
