"""The store interface: what the guard persists (runs, steps, outcomes, pairs, the lifecycle) and how it is read back.

One interface, one module per backend (SQLite now, PostgreSQL later), and one shared test suite
(``tests/store_suite.py``) that every backend must pass, as LangGraph does for its checkpoint savers.

Records are frozen dataclasses with plain values (times are UNIX seconds as floats) so that a backend only has to
map columns. Backends must be safe to call from several threads at once: the guard is called from LangGraph worker
threads and from asyncio code.

Pairs and the lifecycle (docs/pilot-design.md, docs/lifecycle.md) are shared by every replica of a guard, so the
operations that change them are atomic: :meth:`Store.complete_pair` locks the guard's row, reads the pair and both
outcomes, and writes the completed pair, the new :class:`~critic_guard.lifecycle.GuardRecord` and the transition (if
any) in one transaction. The lifecycle rule itself is a pure function passed in by the caller.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self, TypeAlias

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
    "Store",
    "StoreBusyError",
    "UnknownPairError",
    "UnknownRunError",
    "open_store",
    "parse_store_url",
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
    """Whether the run succeeded, as judged after it ended."""

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
    outcome, ``failures`` those that failed.
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

    @property
    def flag_rate(self) -> float | None:
        """Flagged reviews per judged review (None before any verdict)."""
        return self.flagged_steps / self.judged_steps if self.judged_steps else None


_waits = threading.local()


class Store(ABC):
    """Persistence for the guard. Every method is thread-safe; writes are durable when they return.

    Waiting is bounded per call on the user's path: inside :meth:`wait_at_most` the built-in stores give up (raise)
    after the bound instead of their default timeouts (SQLite's 5 s busy timeout, the PostgreSQL pool's 5 s), see
    docs/faults.md.
    """

    @contextmanager
    def wait_at_most(self, seconds: float) -> Iterator[None]:
        """Calls this thread makes inside the block wait at most about ``seconds`` for a busy or unreachable store,
        then raise (:class:`StoreBusyError`, or the backend's own error). Why a thread-local bound rather than a
        shorter timeout for everything: the guard's calls on the user's path must be quick to give up, while the
        CLI, the pilot's bookkeeping and the background writers may wait. A store that does not support it
        ignores it (the default :meth:`wait_limit` is read by the built-in backends only)."""
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        outer = getattr(_waits, "limit", None)
        _waits.limit = seconds if outer is None else min(outer, seconds)
        try:
            yield
        finally:
            _waits.limit = outer

    @staticmethod
    def wait_limit() -> float | None:
        """The bound of the innermost :meth:`wait_at_most` block of this thread, or None (the backend's default)."""
        limit: float | None = getattr(_waits, "limit", None)
        return limit

    def add_reader_barrier(self, settle: Callable[[float | None], object]) -> None:
        """Call ``settle(timeout)`` before each read of this store (weakly held: a bound method of an object that
        may go away). A guard registers its background write queue here, so that a reader in this process sees the
        runs, outcomes and pairs the guard handed to it before the read (docs/faults.md), as it sees queued steps."""
        barriers = self.__dict__.setdefault("_reader_barriers", [])
        barriers.append(weakref.WeakMethod(settle) if inspect.ismethod(settle) else (lambda: settle))

    def remove_reader_barrier(self, settle: Callable[[float | None], object]) -> None:
        """Stop calling ``settle`` (see :meth:`add_reader_barrier`)."""
        barriers = self.__dict__.get("_reader_barriers", [])
        barriers[:] = [ref for ref in barriers if ref() not in (None, settle)]

    def _settle_readers(self) -> None:
        """Before a read: let every registered barrier settle, waiting at most this thread's bound (or 5 s)."""
        barriers = self.__dict__.get("_reader_barriers")
        if barriers:
            limit = self.wait_limit()
            for ref in tuple(barriers):
                settle = ref()
                if settle is not None:
                    settle(5.0 if limit is None else limit)

    def write_runs(self, writes: Sequence[RunRecord | RunEnd]) -> None:
        """Apply run starts (:meth:`add_run`) and ends (:meth:`end_run`) in order; the built-in stores do it in one
        transaction (the guard's background writes batch them). Raises as those do; then nothing is applied by a
        transactional store."""
        for write in writes:
            if isinstance(write, RunEnd):
                self.end_run(write.run_id, status=write.status, ended_at=write.ended_at)
            else:
                self.add_run(write)

    @abstractmethod
    def add_run(self, run: RunRecord) -> bool:
        """Insert a run; False (and no change) if a run with this id exists already, so resuming is harmless."""

    @abstractmethod
    def end_run(self, run_id: str, *, status: str, ended_at: float) -> None:
        """Mark a run ended. Raises :class:`UnknownRunError` for an unknown id."""

    @abstractmethod
    def add_step(self, step: StepRecord) -> None:
        """Append one reviewed step (the hot path: must cost microseconds, not milliseconds; the built-in stores
        queue it for a background batch write, see :mod:`critic_guard.store.step_writer`)."""

    @abstractmethod
    def flush(self) -> None:
        """Make every write accepted so far durable now (the built-in stores batch step writes)."""

    @property
    def lost_steps(self) -> int:
        """Steps accepted by :meth:`add_step` that could not be written (0 for a store whose ``add_step`` writes
        before it returns: it raises instead, and the guard counts that in ``store_errors``)."""
        return 0

    @abstractmethod
    def record_outcome(self, run_id: str, success: bool, *, recorded_at: float) -> OutcomeRecord:
        """Record a run's outcome, idempotently: the same value again returns the first record unchanged.

        Raises :class:`UnknownRunError` for an unknown run, :class:`OutcomeConflictError` for the other value.
        """

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or :class:`UnknownRunError`."""

    @abstractmethod
    def steps_of(self, run_id: str) -> list[StepRecord]:
        """The run's steps in order of (step, attempt); empty for a run without steps. Includes every step this
        store accepted so far (queued steps are written first)."""

    @abstractmethod
    def get_outcome(self, run_id: str) -> OutcomeRecord | None:
        """The run's outcome, or None if none was recorded (unknown runs raise :class:`UnknownRunError`)."""

    @abstractmethod
    def runs(self, guard_key: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        """Runs in order of start (oldest first), optionally only those of one guard key, at most ``limit``."""

    # -- pairs and the lifecycle -------------------------------------------------------------------------------

    @abstractmethod
    def open_pair(self, pair: PairRecord) -> PairRecord:
        """Insert an open pair, or return the stored one if ``pair_id`` exists (idempotent).

        Raises :class:`PairConflictError` if the stored pair names other runs, kind, design or guard key.
        """

    @abstractmethod
    def get_pair(self, pair_id: str) -> PairRecord:
        """The pair with this id, or :class:`UnknownPairError`."""

    @abstractmethod
    def pairs_of_run(self, run_id: str) -> list[PairRecord]:
        """Pairs that name this run in either arm, oldest first (empty for an unknown run)."""

    @abstractmethod
    def pairs(self, guard_key: str, status: PairStatus | str | None = None) -> list[PairRecord]:
        """The guard's pairs, oldest first, optionally only those with one status."""

    @abstractmethod
    def complete_pair(self, pair_id: str, apply: ApplyPair, initial: GuardRecord, *, at: float) -> PairUpdate | None:
        """Complete an open pair whose runs all have outcomes, atomically; None (and no change) otherwise.

        In one transaction: lock the guard row of ``pair.guard_key`` (created from ``initial`` if missing), re-read
        the pair (skip unless open) and its runs' outcomes (skip if one is missing), fold the outcomes in (``apply``
        for an A/B pair; an A/A pair only counts, :func:`~critic_guard.lifecycle.apply_aa_pair`), and write the
        completed pair, the new record and the transition. Two replicas completing the same pair: exactly one
        returns the update. Raises :class:`UnknownPairError`, or ``ValueError`` if ``initial`` is for another key.
        """

    @abstractmethod
    def mark_incomplete(self, pair_id: str, reason: str, *, initial: GuardRecord, at: float) -> bool:
        """Exclude an open pair (a branch could not finish) and count it on the guard record, atomically.

        True if this call changed it, False if it already was incomplete; :class:`PairStateError` if complete.
        """

    @abstractmethod
    def get_guard(self, guard_key: str) -> GuardRecord | None:
        """The guard's lifecycle record with its last transition, or None if nothing was recorded yet."""

    @abstractmethod
    def set_guard_state(
        self, guard_key: str, change: ChangeState, initial: GuardRecord
    ) -> tuple[GuardRecord, Transition]:
        """Apply ``change`` to the locked guard record and store the result and its transition atomically."""

    @abstractmethod
    def transitions(self, guard_key: str) -> list[Transition]:
        """The guard's transitions, oldest first."""

    @abstractmethod
    def guard_keys(self) -> list[str]:
        """Every guard key with a lifecycle record or a pair, sorted."""

    @abstractmethod
    def run_summaries(self) -> list[RunSummary]:
        """One :class:`RunSummary` per guard key with a production run, sorted by key (queued steps count)."""

    # -- pilot bookkeeping (critic_guard.pilot) -----------------------------------------------------------------

    @abstractmethod
    def runs_of_task(self, guard_key: str, task_id: str) -> list[RunRecord]:
        """The guard's runs of one task (production runs and branches), oldest first."""

    @abstractmethod
    def pilot_tasks(self, pilot_key: str) -> list[PilotTaskRecord]:
        """Every task recorded for a pilot, in order of task id."""

    @abstractmethod
    def start_pilot_task(
        self, pilot_key: str, task_id: str, *, attempt_id: str, abandoned: int = 0, at: float
    ) -> PilotTaskRecord:
        """Begin a new attempt of a task that is not done (insert, or count one more attempt and ``abandoned``
        more abandoned pairs); return the stored row. A done task is returned unchanged (its ``attempt_id`` is
        then not ``attempt_id``: the caller must not run it)."""

    @abstractmethod
    def finish_pilot_task(
        self,
        pilot_key: str,
        task_id: str,
        *,
        attempt_id: str,
        status: PilotTaskStatus | str,
        run_id: str | None,
        error: str | None = None,
        at: float,
    ) -> bool:
        """End the running attempt ``attempt_id`` as done or failed; False (no change) if it is not the current
        running attempt."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


def parse_store_url(url: str) -> tuple[str, str]:
    """Split a store URL into (backend, target) without opening anything; raise ``ValueError`` if malformed.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` and ``sqlite:///:memory:`` give a file path (as in
    SQLAlchemy); ``postgresql://...`` is passed to the PostgreSQL backend unchanged.
    """
    scheme, sep, rest = url.partition("://")
    backend = _SCHEMES.get(scheme.lower()) if sep else None
    if backend is None:
        raise ValueError(
            f"unsupported store URL {url!r}: expected 'sqlite:///path.db', 'sqlite:///:memory:' or "
            "'postgresql://user@host/db' (or None to persist nothing)"
        )
    if backend == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(
                f"SQLite store URL needs three slashes and a path, e.g. 'sqlite:///critic_guard.db'; got {url!r}"
            )
        return backend, rest[1:]
    return backend, url


def open_store(url: str | None) -> Store | None:
    """Open the backend a URL names (None persists nothing). The PostgreSQL backend (and psycopg) is imported only
    when a ``postgresql://`` URL asks for it."""
    if url is None:
        return None
    backend, target = parse_store_url(url)
    if backend == "sqlite":
        from critic_guard.store.sqlite import SQLiteStore

        return SQLiteStore(target)
    from critic_guard.store.postgres import PostgresStore  # needs the `postgres` extra (psycopg 3)

    return PostgresStore(target)
