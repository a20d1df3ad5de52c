"""``RunRecorder``: one guard's runs, from start to end and outcome, and ``RecentRuns``, what it remembers of them.

A run's start, end and outcome are what the statistics rest on, so each is a critical write
(:mod:`critic_guard.store_writes`): made now within ``store_wait_s``, or handed to the writer thread
(``background``, what the integrations do on the user's path), and retried in order, never dropped
(docs/faults.md). An outcome completes the run's open pairs (:class:`~critic_guard.pair_book.PairBook`).

The guard keeps little per run in memory (:class:`RecentRuns`, bounded): the attempt counter that numbers retries of
the same step, and the run's task, which names the task of a lost write without a store read. Without a store the
private in-memory database forgets all but the newest runs now and then; evidence (pairs, the lifecycle) is kept.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from critic_guard.at_rest import task_record
from critic_guard.config import GuardConfig
from critic_guard.fork_plan import AA_PAIR_SUFFIX
from critic_guard.guard_events import GuardObserver
from critic_guard.pair_book import PairBook
from critic_guard.store.base import PairUpdate, RunEnd, RunRecord, UnknownRunError
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.store_writes import StoreWrites
from critic_guard.telemetry.content import ContentPolicy
from critic_guard.types import Arm

__all__ = ["RecentRuns", "RunRecorder"]

_MAX_TRACKED_RUNS = 10_000
_FORGET_EVERY = 1_000  # without a store: every this many new runs, forget all but the newest _MAX_TRACKED_RUNS


@dataclass(slots=True)
class _RunState:
    last_step: int = -1
    attempt: int = 0
    task_id: str | None = None  # names the task of a lost write


class RecentRuns:
    """What the guard remembers of its newest runs (LRU, at most ``_MAX_TRACKED_RUNS``; thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, _RunState] = OrderedDict()
        self.started = 0

    def start(self, run_id: str, task_id: str | None) -> int:
        """Remember a run's task; returns how many runs were started so far."""
        with self._lock:
            self._track(run_id).task_id = task_id
            self.started += 1
            return self.started

    def next_attempt(self, run_id: str, step: int) -> int:
        """0 for the first review of a step, 1, 2, ... for retries of the same step (after a ROLLBACK)."""
        with self._lock:
            state = self._track(run_id)
            state.attempt = state.attempt + 1 if step == state.last_step else 0
            state.last_step = step
            return state.attempt

    def task_of(self, run_id: str) -> str | None:
        """The task of a recent run (or of the production run a pair id names), from memory: for lost writes."""
        with self._lock:
            state = self._by_id.get(run_id) or self._by_id.get(run_id.removesuffix(AA_PAIR_SUFFIX))
            return None if state is None else state.task_id

    def _track(self, run_id: str) -> _RunState:
        state = self._by_id.get(run_id)
        if state is None:
            state = self._by_id[run_id] = _RunState()
            if len(self._by_id) > _MAX_TRACKED_RUNS:
                self._by_id.popitem(last=False)
        else:
            self._by_id.move_to_end(run_id)
        return state


@dataclass(frozen=True, slots=True)
class _TracedOutcome:
    """A background outcome write; the run's span ends after its first attempt, so the outcome lands on it."""

    recorder: RunRecorder
    run_id: str
    success: bool
    status: str

    def __call__(self) -> None:
        try:
            self.recorder.write_outcome(self.run_id, self.success)
        finally:
            self.recorder.events.run_ended(self.run_id, self.status)  # idempotent on retries


def _check_success(success: object) -> None:
    if not isinstance(success, bool):
        raise TypeError(f"success must be a bool, got {type(success).__name__}")


class RunRecorder:
    """Starts and ends the runs of ``guard_key``. ``memory`` is the private in-memory store of a guard without one
    (None otherwise); ``content`` says what of a task the store may keep."""

    def __init__(
        self,
        config: GuardConfig,
        guard_key: str,
        *,
        writes: StoreWrites,
        pairs: PairBook,
        events: GuardObserver,
        recent: RecentRuns,
        memory: SQLiteStore | None,
        content: ContentPolicy,
    ) -> None:
        self.config = config
        self.guard_key = guard_key
        self.events = events
        self._writes = writes
        self._records = writes.records
        self._pairs = pairs
        self._recent = recent
        self._memory = memory
        self._content = content

    def start(
        self,
        *,
        run_id: str | None,
        task: Mapping[str, Any] | None,
        arm: Arm,
        parent_run_id: str | None,
        fork_step: int | None,
        conversation_id: str | None,
        trace_parent: Any,
        background: bool,
    ) -> str:
        """See :meth:`critic_guard.guard.CriticGuard.start_run`."""
        run_id = run_id or uuid.uuid4().hex
        task_map = dict(task) if task else None
        raw_task_id = None if task_map is None else task_map.get("task_id", task_map.get("id"))
        task_id = None if raw_task_id is None else str(raw_task_id)
        started = self._recent.start(run_id, task_id)
        if self._memory is not None and started % _FORGET_EVERY == 0:
            self._forget_old_runs(self._memory)
        record = RunRecord(
            run_id=run_id,
            guard_key=self.guard_key,
            agent_name=self.config.agent_name,
            arm=Arm(arm),
            started_at=time.time(),
            task_id=task_id,
            task=None if task_map is None else self.task_record(task_map),
            parent_run_id=parent_run_id,
            fork_step=fork_step,
        )
        if background:
            self._writes.background_run("start_run", run_id, record)
        else:
            self._writes.critical("start_run", run_id, functools.partial(self._records.add_run, record), False)
        self.events.run_started(record, conversation_id=conversation_id, parent=trace_parent)
        return run_id

    def task_record(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """See :meth:`critic_guard.guard.CriticGuard.task_record`."""
        return task_record(task, fields=self.config.task_fields, content=self._content)

    def _forget_old_runs(self, memory: SQLiteStore) -> None:
        """On the user's path: bounded and fail-open like every store call."""
        try:
            self._writes.bounded(functools.partial(memory.forget_old_runs, _MAX_TRACKED_RUNS))
        except Exception as exc:
            self._writes.failed(exc)

    def end(self, run_id: str, *, status: str, success: bool | None, background: bool) -> list[PairUpdate]:
        """See :meth:`critic_guard.guard.CriticGuard.end_run`."""
        if background:
            self._writes.background_run("end_run", run_id, RunEnd(run_id, status, time.time()))
            if success is None:
                self.events.run_ended(run_id, status)
            else:
                _check_success(success)
                self._writes.background("record_outcome", run_id, _TracedOutcome(self, run_id, success, status))
            return []
        write = functools.partial(self._records.end_run, run_id, status=status, ended_at=time.time())
        try:
            self._writes.critical("end_run", run_id, write, None)
        except UnknownRunError:
            raise UnknownRunError(f"unknown run id {run_id!r}: start it with guard.start_run() first") from None
        updates = [] if success is None else self.record_outcome(run_id, success)
        self.events.run_ended(run_id, status)  # after the outcome, so it lands on the open span
        return updates

    def record_outcome(self, run_id: str, success: bool) -> list[PairUpdate]:
        """See :meth:`critic_guard.guard.CriticGuard.record_outcome`."""
        _check_success(success)
        updates: list[PairUpdate] = self._writes.critical(
            "record_outcome", run_id, functools.partial(self.write_outcome, run_id, success), []
        )
        return updates

    def write_outcome(self, run_id: str, success: bool) -> list[PairUpdate]:
        """Write the outcome and complete the pairs it completes (the write a retry repeats: idempotent)."""
        try:
            self._records.record_outcome(run_id, success, recorded_at=time.time())
        except UnknownRunError:
            raise UnknownRunError(
                f"unknown run id {run_id!r}: no run with this id was started (guard.start_run) in this store"
            ) from None
        updates = self._pairs.complete_with(run_id)
        if not updates:  # otherwise each completed pair reported the outcome with its cell
            self.events.outcome(run_id, success)
        return updates
