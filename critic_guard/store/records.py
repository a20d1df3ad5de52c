"""The store's records and errors: what the guard writes (runs, steps, outcomes, pairs, pilot tasks) and reads back.

Records are frozen dataclasses with plain values (times are UNIX seconds as floats) so that a backend only has to
map columns (docs/pilot-design.md for pairs, docs/lifecycle.md for the guard record they feed). They live apart
from the interface (:mod:`critic_guard.store.base`) so that the SQL modules and the interface import them without
importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from critic_guard.lifecycle import GuardRecord, Transition
from critic_guard.types import Action, Arm

__all__ = [
    "ApplyPair",
    "ChangeState",
    "OutcomeConflictError",
    "OutcomeRecord",
    "PairConflictError",
    "PairDesign",
    "PairKind",
    "PairRecord",
    "PairStateError",
    "PairStatus",
    "PairUpdate",
    "PilotTaskRecord",
    "PilotTaskStatus",
    "RunEnd",
    "RunRecord",
    "RunSummary",
    "StepRecord",
    "StoreBusyError",
    "UnknownPairError",
    "UnknownRunError",
]


class UnknownRunError(KeyError):
    """No run with this id is in the store."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0]) if self.args else "unknown run"


class StoreBusyError(RuntimeError):
    """A store call gave up within its wait bound (:meth:`Store.wait_at_most`): the store is busy or unreachable."""


class OutcomeConflictError(ValueError):
    """An outcome was already recorded for this run with the other value."""


class UnknownPairError(KeyError):
    """No pair with this id is in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown pair"


class PairConflictError(ValueError):
    """A pair id was opened again with different runs, kind, design or guard key."""


class PairStateError(ValueError):
    """An operation that the pair's status does not allow (e.g. marking a complete pair incomplete)."""


class PairKind(StrEnum):
    """``ab``: control vs treatment (fed to the monitor); ``aa``: two runs of the served arm (rerun noise)."""

    AB = "ab"
    AA = "aa"


class PairDesign(StrEnum):
    """``fork``: both arms continue from the first flag; ``full``: two full runs per task (paper-faithful)."""

    FORK = "fork"
    FULL = "full"


class PairStatus(StrEnum):
    OPEN = "open"  # waiting for outcomes
    COMPLETE = "complete"  # both outcomes in, counted
    INCOMPLETE = "incomplete"  # a branch could not finish (e.g. an undeclared side-effecting tool): excluded


@dataclass(frozen=True, slots=True)
class PairRecord:
    """One pair (docs/pilot-design.md): keyed by the production run id, one run per arm.

    For a task the critic never flagged (fork design) both run ids are the production run: one outcome counts for
    both arms. For an A/A pair ``control_run_id`` is the served run and ``treatment_run_id`` its second shadow.
    """

    pair_id: str
    guard_key: str
    control_run_id: str
    treatment_run_id: str
    flagged: bool
    created_at: float
    kind: PairKind = PairKind.AB
    design: PairDesign = PairDesign.FORK
    task_id: str | None = None
    fork_step: int | None = None
    fork_checkpoint_id: str | None = None
    status: PairStatus = PairStatus.OPEN
    reason: str | None = None
    control_success: bool | None = None
    treatment_success: bool | None = None
    completed_at: float | None = None

    def __post_init__(self) -> None:
        for name in ("pair_id", "guard_key", "control_run_id", "treatment_run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"PairRecord.{name} must be a non-empty string, got {value!r}")
        object.__setattr__(self, "kind", PairKind(self.kind))
        object.__setattr__(self, "design", PairDesign(self.design))
        object.__setattr__(self, "status", PairStatus(self.status))
        if self.kind is PairKind.AA and self.control_run_id == self.treatment_run_id:
            raise ValueError(f"an A/A pair needs two different runs, got {self.control_run_id!r} twice")

    @property
    def single_run(self) -> bool:
        """True for an unflagged task in the fork design: one run stands for both arms."""
        return self.control_run_id == self.treatment_run_id

    @property
    def cell(self) -> str | None:
        """``n00`` / ``n01`` / ``n10`` / ``n11`` once complete (control digit first), else None."""
        if self.control_success is None or self.treatment_success is None:
            return None
        return f"n{int(self.control_success)}{int(self.treatment_success)}"


@dataclass(frozen=True, slots=True)
class PairUpdate:
    """What completing one pair did: the pair as completed, the guard record after it, the transition it caused."""

    pair: PairRecord
    guard: GuardRecord
    transition: Transition | None

    @property
    def counted(self) -> bool:
        """Whether the pair reached the monitor (A/B pairs do, A/A pairs do not)."""
        return self.pair.kind is PairKind.AB


class PilotTaskStatus(StrEnum):
    """Where a pilot task stands (:mod:`critic_guard.pilot`): the bookkeeping that makes a pilot resumable."""

    RUNNING = "running"  # an attempt started; after a crash the attempt is resolved on the next start
    DONE = "done"  # its production run ended; the pair (if any) is the production run's
    FAILED = "failed"  # the attempt raised; its open pairs were marked incomplete; a rerun tries again


@dataclass(frozen=True, slots=True)
class PilotTaskRecord:
    """One task of one pilot: which attempt is current, which production run served it, how often it restarted.

    ``attempt_id`` is written into the task metadata of every run of the attempt (``pilot_attempt``), so that after
    a crash the runs (and their open pairs) of an unfinished attempt can be found. ``abandoned`` counts the pairs
    of earlier attempts marked incomplete because the pilot restarted.
    """

    pilot_key: str
    task_id: str
    status: PilotTaskStatus
    attempt_id: str
    attempts: int
    abandoned: int
    updated_at: float
    run_id: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", PilotTaskStatus(self.status))


ApplyPair: TypeAlias = Callable[[GuardRecord, bool, bool], tuple[GuardRecord, Transition | None]]
"""The lifecycle rule for one A/B pair: ``(record, control_success, treatment_success) -> (record, transition)``."""

ChangeState: TypeAlias = Callable[[GuardRecord], tuple[GuardRecord, Transition]]
"""A state change decided from the current record, e.g. a human override (``lifecycle.override``)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of the agent on a task. ``parent_run_id``/``fork_step`` are set for a branch forked from a run."""

    run_id: str
    guard_key: str
    agent_name: str
    arm: Arm
    started_at: float
    task_id: str | None = None
    task: Mapping[str, Any] | None = None
    parent_run_id: str | None = None
    fork_step: int | None = None
    status: str = "running"
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class RunEnd:
    """The end of a run, as :meth:`Store.write_runs` takes it (beside :class:`RunRecord` for a start)."""

    run_id: str
    status: str
    ended_at: float


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One reviewed step: the verdict (None fields on critic error), the decision, and how long the critic took.

    ``attempt`` counts reviews of the same step index within a run (a ROLLBACK re-asks the model at the same step).
    """

    run_id: str
    step: int
    attempt: int
    p_fail: float | None
    label: str | None
    rationale: str | None
    flagged: bool
    action: Action
    reason: str
    critic_error: str | None
    latency_s: float
    created_at: float


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """Whether the run succeeded, as judged after it ended. One per run: recording the same value again returns the
    first record, the other value is an :class:`OutcomeConflictError` (an outcome is evidence, never rewritten)."""

    run_id: str
    success: bool
    recorded_at: float


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a guard key's production runs recorded, counted in the store (shadow branches, which start at a flag,
    are not counted). Why: a guard in mode ``observe`` (or ``on``) writes runs and verdicts but no pairs and no
    lifecycle record, and ``critic-guard status`` must still show it (docs/report.md, "Observe mode").

    ``judged_steps`` are reviews with a verdict, ``critic_errors`` reviews without one; ``flagged_runs`` runs
    with at least one flagged review; ``interventions`` reviews that acted; ``outcomes`` runs with a recorded
    outcome, ``failures`` those that failed; ``abandoned`` runs that never reached their end (they raised, or their
    thread went on without them: docs/faults.md).
    """

    guard_key: str
    runs: int
    judged_steps: int
    flagged_steps: int
    flagged_runs: int
    critic_errors: int
    interventions: int
    outcomes: int
    failures: int
    abandoned: int = 0

    @property
    def flag_rate(self) -> float | None:
        """Flagged reviews per judged review (None before any verdict)."""
        return self.flagged_steps / self.judged_steps if self.judged_steps else None
