"""The store interface: what the guard persists (runs, steps, outcomes, pairs, the lifecycle) and how it is read back.

One interface, one module per backend (SQLite, PostgreSQL) over SQL written once (:mod:`critic_guard.store.sql_store`),
and one shared test suite (``tests/store_suite.py``) that every backend must pass, as LangGraph does for its
checkpoint savers. Backends must be safe to call from several threads at once: the guard is called from LangGraph
worker threads and from asyncio code.

The interface is split by what callers use, so that a caller states what it needs and a test double implements only
that: :class:`RunLog` (the guard's runs, steps and outcomes), :class:`PairLedger` (its pairs and lifecycle record),
:class:`PilotBook` (the pilot engine's bookkeeping) and :class:`StoreReader` (what the report, ``critic-guard
status`` and traces read). :class:`Store` is all of them: what a backend implements and what a guard is given.

Pairs and the lifecycle (docs/pilot-design.md, docs/lifecycle.md) are shared by every replica of a guard, so the
operations that change them are atomic: :meth:`PairLedger.complete_pair` locks the guard's row, reads the pair and
both outcomes, and writes the completed pair, the new :class:`~critic_guard.lifecycle.GuardRecord` and the
transition (if any) in one transaction. The lifecycle rule itself is a pure function passed in by the caller.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, Self

from critic_guard.lifecycle import GuardRecord, Transition
from critic_guard.store import records
from critic_guard.store.records import *  # noqa: F403 (the records, importable from here as before)
from critic_guard.store.records import (
    ApplyPair,
    ChangeState,
    OutcomeRecord,
    PairRecord,
    PairStatus,
    PairUpdate,
    PilotTaskRecord,
    PilotTaskStatus,
    RunEnd,
    RunRecord,
    RunSummary,
    StepRecord,
)
from critic_guard.store.urls import parse_store_url

__all__ = [
    "Bounded",
    "PairLedger",
    "PairReader",
    "PilotBook",
    "RunLog",
    "RunReader",
    "Store",
    "StoreReader",
    "open_store",
    "parse_store_url",
]
__all__ += records.__all__

_waits = threading.local()


class Bounded(Protocol):
    """A store whose calls can be bounded per thread (docs/faults.md): inside :meth:`wait_at_most` the built-in
    stores give up (raise) after the bound instead of their default timeouts (SQLite's 5 s busy timeout, the
    PostgreSQL pool's 5 s)."""

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


class RunReader(Protocol):
    """Runs, their steps and outcomes, read back: the report's traces and calibration read these."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or :class:`UnknownRunError`."""

    @abstractmethod
    def steps_of(self, run_id: str) -> list[StepRecord]:
        """The run's steps in order of (step, attempt); empty for a run without steps. Includes every step this
        store accepted so far (queued steps are written first)."""

    @abstractmethod
    def production_steps(self, guard_key: str) -> list[tuple[StepRecord, bool | None]]:
        """The steps of the guard key's production runs (shadow branches left out), each with its run's outcome
        (True: succeeded, False: failed, None: none recorded yet), in the order of :meth:`runs` and then
        :meth:`steps_of`. One read for a whole key, where :meth:`steps_of` and :meth:`get_outcome` per run would
        be one each (the observe report, report/observed.py); includes the queued steps, as :meth:`steps_of`."""

    @abstractmethod
    def get_outcome(self, run_id: str) -> OutcomeRecord | None:
        """The run's outcome, or None if none was recorded (unknown runs raise :class:`UnknownRunError`)."""

    @abstractmethod
    def runs(self, guard_key: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        """Runs in order of start (oldest first), optionally only those of one guard key, at most ``limit``."""


class RunLog(RunReader, Protocol):
    """Runs, steps and outcomes as the guard records them (and reads them back)."""

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


class PairReader(Protocol):
    """Pairs and lifecycle records, read: the report, ``critic-guard status`` and the pilot view read these."""

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
    def get_guard(self, guard_key: str) -> GuardRecord | None:
        """The guard's lifecycle record with its last transition, or None if nothing was recorded yet."""

    @abstractmethod
    def transitions(self, guard_key: str) -> list[Transition]:
        """The guard's transitions, oldest first."""

    @abstractmethod
    def guard_keys(self) -> list[str]:
        """Every guard key with a lifecycle record or a pair, sorted."""

    @abstractmethod
    def run_summaries(self) -> list[RunSummary]:
        """One :class:`RunSummary` per guard key with a production run, sorted by key (queued steps count)."""


class PairLedger(PairReader, Protocol):
    """Pairs and the lifecycle record as the guard changes them, each change atomic across replicas."""

    @abstractmethod
    def open_pair(self, pair: PairRecord) -> PairRecord:
        """Insert an open pair, or return the stored one if ``pair_id`` exists (idempotent).

        Raises :class:`PairConflictError` if the stored pair names other runs, kind, design or guard key.
        """

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
    def set_guard_state(
        self, guard_key: str, change: ChangeState, initial: GuardRecord
    ) -> tuple[GuardRecord, Transition]:
        """Apply ``change`` to the locked guard record and store the result and its transition atomically."""


class PilotBook(Bounded, PairReader, Protocol):
    """The pilot engine's bookkeeping (:mod:`critic_guard.pilot`): which task ran, which attempt, which runs."""

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


class StoreReader(RunReader, PairReader, Protocol):
    """Everything a reader of a store reads (the report, ``critic-guard status``, traces), and nothing it writes."""


class Store(RunLog, PairLedger, PilotBook, ABC):
    """Persistence for the guard: every protocol above. Every method is thread-safe; writes are durable when they
    return. A backend subclasses it (the built-in ones through :class:`~critic_guard.store.sql_store.SQLStore`)."""

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

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
