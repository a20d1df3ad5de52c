"""``SQLStore``: the whole :class:`~critic_guard.store.base.Store` written once over SQL, for both built-in backends.

Why one class: the two backends must behave the same, call for call (``tests/store_suite.py`` runs against both), so
every public method is written here once, as "which statements, in which transaction": the statements live in
:mod:`~critic_guard.store.run_log`, :mod:`~critic_guard.store.ledger` and :mod:`~critic_guard.store.pilot_tasks`. A
backend only supplies connections, transactions and its :class:`~critic_guard.store.dialect.Dialect` through
:meth:`SQLStore._session` (as OpenTelemetry's ``sqlite3`` instrumentation is a thin layer over its ``dbapi`` one),
and creates the step writer. Waits stay bounded per backend (docs/faults.md): a session waits at most the thread's
:meth:`~critic_guard.store.base.Bounded.wait_at_most` bound for its connection and its statements.

Reads first settle the reader barriers (:meth:`~critic_guard.store.base.Store.add_reader_barrier`), so a reader in
this process sees what a guard handed to its background writer; writes never do (the writer itself writes through
them). Steps are batched by a :class:`~critic_guard.store.step_writer.StepWriter` and flushed before steps are read.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from critic_guard.lifecycle import GuardRecord, Transition
from critic_guard.store import pair_track, pilot_tasks, run_log
from critic_guard.store.base import Store
from critic_guard.store.ledger import Ledger
from critic_guard.store.records import (
    ApplyPair,
    ChangeState,
    OutcomeConflictError,
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
from critic_guard.store.step_writer import StepWriter

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["SQLStore"]


class SQLStore(Store):
    """A :class:`Store` over one SQL database; a backend implements :meth:`_session` and sets ``_steps``."""

    _steps: StepWriter  # set by the backend's constructor: StepWriter(self._insert_steps, unavailable=...)

    @abstractmethod
    def _session(self, *, transaction: bool) -> AbstractContextManager[Ledger]:
        """A ledger over one connection, within this thread's wait bound. With ``transaction`` its statements run
        in one write transaction, committed on exit and rolled back on error; without, each commits on its own."""

    @contextmanager
    def _reading(self) -> Iterator[Ledger]:
        """A ledger for reads, after the reader barriers settled."""
        self._settle_readers()
        with self._session(transaction=False) as ledger:
            yield ledger

    def _writing(self) -> AbstractContextManager[Ledger]:
        """A ledger inside one write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL row locks)."""
        return self._session(transaction=True)

    # -- runs, steps, outcomes -------------------------------------------------------------------------------------

    def add_run(self, run: RunRecord) -> bool:
        with self._session(transaction=False) as ledger:
            return run_log.insert_run(ledger, run)

    def end_run(self, run_id: str, *, status: str, ended_at: float) -> None:
        with self._session(transaction=False) as ledger:
            run_log.end_run(ledger, RunEnd(run_id, status, ended_at))

    def write_runs(self, writes: Sequence[RunRecord | RunEnd]) -> None:
        with self._writing() as ledger:
            for write in writes:
                if isinstance(write, RunEnd):
                    run_log.end_run(ledger, write)
                else:
                    run_log.insert_run(ledger, write)

    def add_step(self, step: StepRecord) -> None:
        self._steps.add(step)

    def _insert_steps(self, steps: Sequence[StepRecord]) -> None:
        """Write a batch of steps in one transaction (called by the step writer)."""
        with self._writing() as ledger:
            run_log.insert_steps(ledger, steps)

    def flush(self) -> None:
        self._steps.flush(self.wait_limit())

    @property
    def lost_steps(self) -> int:
        return self._steps.lost

    def record_outcome(self, run_id: str, success: bool, *, recorded_at: float) -> OutcomeRecord:
        with self._writing() as ledger:
            outcome = run_log.record_outcome(ledger, run_id, success, recorded_at)
        if outcome.success != success:
            raise OutcomeConflictError(
                f"run {run_id!r} already has outcome success={outcome.success}; refusing to overwrite with {success}"
            )
        return outcome

    def get_run(self, run_id: str) -> RunRecord:
        with self._reading() as ledger:
            return run_log.get_run(ledger, run_id)

    def steps_of(self, run_id: str) -> list[StepRecord]:
        self._steps.flush(self.wait_limit())  # read your own writes (bounded inside wait_at_most)
        with self._reading() as ledger:
            return run_log.steps_of(ledger, run_id)

    def production_steps(self, guard_key: str) -> list[tuple[StepRecord, bool | None]]:
        self._steps.flush(self.wait_limit())  # read your own writes, as steps_of does
        with self._reading() as ledger:
            return run_log.production_steps(ledger, guard_key)

    def get_outcome(self, run_id: str) -> OutcomeRecord | None:
        with self._reading() as ledger:
            return run_log.get_outcome(ledger, run_id)

    def runs(self, guard_key: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        with self._reading() as ledger:
            return run_log.runs(ledger, guard_key, limit)

    def run_summaries(self) -> list[RunSummary]:
        self._steps.flush(self.wait_limit())  # count the reviews still queued (bounded inside wait_at_most)
        with self._reading() as ledger:
            return run_log.run_summaries(ledger)

    # -- pairs and the lifecycle -----------------------------------------------------------------------------------

    def open_pair(self, pair: PairRecord) -> PairRecord:
        with self._writing() as ledger:
            return ledger.open_pair(pair)

    def get_pair(self, pair_id: str) -> PairRecord:
        with self._reading() as ledger:
            return ledger.get_pair(pair_id)

    def pairs_of_run(self, run_id: str) -> list[PairRecord]:
        with self._reading() as ledger:
            return ledger.pairs_of_run(run_id)

    def pairs(self, guard_key: str, status: PairStatus | str | None = None) -> list[PairRecord]:
        with self._reading() as ledger:
            return ledger.pairs(guard_key, status)

    def complete_pair(self, pair_id: str, apply: ApplyPair, initial: GuardRecord, *, at: float) -> PairUpdate | None:
        with self._writing() as ledger:
            return ledger.complete_pair(pair_id, apply, initial, at=at)

    def mark_incomplete(self, pair_id: str, reason: str, *, initial: GuardRecord, at: float) -> bool:
        with self._writing() as ledger:
            return ledger.mark_incomplete(pair_id, reason, initial, at=at)

    def get_guard(self, guard_key: str) -> GuardRecord | None:
        with self._reading() as ledger:
            return ledger.get_guard(guard_key)

    def set_guard_state(
        self, guard_key: str, change: ChangeState, initial: GuardRecord
    ) -> tuple[GuardRecord, Transition]:
        with self._writing() as ledger:
            return ledger.set_guard_state(guard_key, change, initial)

    def transitions(self, guard_key: str) -> list[Transition]:
        with self._reading() as ledger:
            return ledger.transitions(guard_key)

    def guard_keys(self) -> list[str]:
        with self._reading() as ledger:
            return ledger.guard_keys()

    # -- the report's reads, set-based (critic_guard.store.pair_track) ---------------------------------------------

    def track_columns(self, guard_key: str) -> pair_track.TrackColumns:
        """The guard key's completed A/B pairs with the monitor the lifecycle stored after each."""
        self._steps.flush(self.wait_limit())  # the fork points are step rows: read the queued ones too
        with self._reading() as ledger:
            return pair_track.track_columns(ledger, guard_key)

    def pair_tallies(self, guard_key: str) -> pair_track.PairTallies:
        with self._reading() as ledger:
            return pair_track.pair_tallies(ledger, guard_key)

    def labeled_verdict_arrays(self, guard_key: str) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """``(p_fail, failed)`` as :func:`critic_guard.calibration.labeled_verdicts` gives them, in one statement."""
        self._steps.flush(self.wait_limit())
        with self._reading() as ledger:
            return pair_track.labeled_verdict_arrays(ledger, guard_key)

    # -- pilot bookkeeping -----------------------------------------------------------------------------------------

    def runs_of_task(self, guard_key: str, task_id: str) -> list[RunRecord]:
        with self._reading() as ledger:
            return run_log.runs_of_task(ledger, guard_key, task_id)

    def pilot_tasks(self, pilot_key: str) -> list[PilotTaskRecord]:
        with self._reading() as ledger:
            return pilot_tasks.records(ledger, pilot_key)

    def start_pilot_task(
        self, pilot_key: str, task_id: str, *, attempt_id: str, abandoned: int = 0, at: float
    ) -> PilotTaskRecord:
        with self._writing() as ledger:
            return pilot_tasks.start(ledger, pilot_key, task_id, attempt_id, abandoned, at)

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
        with self._writing() as ledger:
            return pilot_tasks.finish(
                ledger, pilot_key, task_id, attempt_id, PilotTaskStatus(status), run_id, error, at
            )
