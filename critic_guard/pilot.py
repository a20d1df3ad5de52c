"""Run a task suite through a guard in a pilot: bounded concurrency, live progress, resumable after a crash.

The runner is framework-neutral. It talks to the agent framework through a :class:`PilotAdapter` (``run_task``
runs one task's production run to its end and awaits its shadow branch), which a suite's ``adapter`` factory builds
for a guard; the LangGraph one is ``critic_guard_langgraph.pilot.LangGraphPilot``. ``critic-guard pilot
module:function`` loads a :class:`PilotSuite` (:func:`load_suite`) and calls :func:`run_pilot`. The suite and its
loader are critic_guard/pilot_suite.py, the tally and result critic_guard/pilot_result.py; this module is the runner
and re-exports them (users import every pilot name from here).

Why the pilot survives ``kill -9`` without losing a pair or counting one twice. Every task has a row in the store's
``pilot_tasks`` table (:mod:`critic_guard.store.pilot_tasks`) keyed by the pilot and the task: ``running`` with the
id of the current *attempt* while it runs, ``done`` with the production run that served it once that run and its
branch finished. The attempt id travels in the task metadata of every run of the attempt (``pilot_attempt``), so
on the next start each ``running`` row is resolved from what the store says:

* its production run's pair is complete (or excluded): the crash came after the task finished; it is done;
* otherwise the attempt is abandoned: its open pairs are marked incomplete with reason ``abandoned: pilot
  restarted`` (excluded from the statistics, counted in the report) and the task runs again with fresh runs.

Pairs are completed atomically by the store, so a pair is counted exactly once or not at all, and the report
counts only the pair of each task's final production run.

Store faults (docs/faults.md). The pilot's own bookkeeping is retried with backoff for ``store_retry_s``, each try
waiting at most ``store_wait_s`` (the event loop never blocks on a store that is down). After each task the runner
waits until the task's own queued run, outcome and pair writes are written or lost; a task whose writes were lost
anyway (or still queued after twice ``store_retry_s``), or whose end could not be recorded, is *failed*: named in
the result, its open pairs excluded, and run again by the next start (its row is ``failed`` or still ``running``,
never ``done``). ``critic-guard pilot`` then exits non-zero.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from critic_guard.at_rest import ATTEMPT_KEY
from critic_guard.critic_pool import describe_error
from critic_guard.guard import CriticGuard
from critic_guard.pilot_result import PilotProgress, PilotResult, Tally
from critic_guard.pilot_suite import PilotAdapter, PilotSuite, PilotTask, SuiteError, load_suite
from critic_guard.stats.counts import PairedCounts
from critic_guard.stats.report import analyze, verdict_of
from critic_guard.store.base import (
    PairKind,
    PairRecord,
    PairStatus,
    PilotBook,
    PilotTaskRecord,
    PilotTaskStatus,
    RunRecord,
    UnknownPairError,
)
from critic_guard.write_queue import LostWrite

__all__ = [
    "ABANDONED_REASON",
    "ATTEMPT_KEY",
    "PilotAdapter",
    "PilotProgress",
    "PilotResult",
    "PilotSuite",
    "PilotTask",
    "StoreUnavailableError",
    "SuiteError",
    "Tally",
    "load_suite",
    "run_pilot",
]

ABANDONED_REASON = "abandoned: pilot restarted"
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0
_T = TypeVar("_T")


def _running_verdict(counts: PairedCounts, level: float) -> str | None:
    return None if counts.n == 0 else verdict_of(counts, level)[0].value


class StoreUnavailableError(RuntimeError):
    """The store refused a pilot bookkeeping call for the whole retry window."""


class _Pilot:
    """One call of :func:`run_pilot` (the state shared by its concurrent tasks)."""

    def __init__(self, guard: CriticGuard, store: PilotBook, key: str) -> None:
        self.guard, self.store, self.key = guard, store, key
        self.ran = 0

    async def retrying(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()`` (idempotent bookkeeping), retried with backoff for ``store_retry_s``, each try bounded by
        ``store_wait_s`` so that a store that is down never blocks the other tasks; then
        :class:`StoreUnavailableError`. Each try runs in a worker thread: no store call on the event loop
        (docs/faults.md)."""
        config = self.guard.config
        deadline = time.monotonic() + config.store_retry_s
        delay = _FIRST_DELAY_S
        while True:
            try:
                return await asyncio.to_thread(self._bounded, call, config.store_wait_s)
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise StoreUnavailableError(f"{what}: {describe_error(exc)}") from exc
            await asyncio.sleep(delay)
            delay = min(2 * delay, _MAX_DELAY_S)

    def _bounded(self, call: Callable[[], _T], wait_s: float) -> _T:
        with self.store.wait_at_most(wait_s):  # a bound of the thread that calls the store
            return call()

    async def settled(self, attempt: Awaitable[_T], fallback: _T) -> _T:
        """Await ``attempt``, or ``fallback`` if the store stayed unavailable (the task is then failed)."""
        try:
            return await attempt
        except StoreUnavailableError:
            return fallback

    def attempt_runs(self, row: PilotTaskRecord) -> list[RunRecord]:
        runs = self.store.runs_of_task(self.guard.guard_key, row.task_id)
        return [r for r in runs if r.task is not None and r.task.get(ATTEMPT_KEY) == row.attempt_id]

    def production_pair(self, run_id: str | None) -> PairRecord | None:
        if run_id is None:
            return None
        try:
            return self.store.get_pair(run_id)
        except UnknownPairError:
            return None

    def exclude_open_pairs(self, runs: Sequence[RunRecord], reason: str, *, also: Sequence[str] = ()) -> int:
        """Mark the open A/B pairs of these runs (and of the run ids ``also``: runs whose own record may be lost)
        incomplete; how many were marked (A/A pairs too, uncounted)."""
        marked = 0
        pairs = {p.pair_id: p for run_id in {*(r.run_id for r in runs), *also} for p in self.store.pairs_of_run(run_id)}
        for pair in pairs.values():
            if pair.status is PairStatus.OPEN:
                self.guard.mark_incomplete(pair.pair_id, reason)
                marked += pair.kind is PairKind.AB
        return marked

    def resolve(self, row: PilotTaskRecord) -> int:
        """Settle a ``running`` row left by a crash: done if its production pair finished, else abandon its open
        pairs (returned count) so the task runs again."""
        runs = self.attempt_runs(row)
        production = next((r for r in runs if r.parent_run_id is None), None)
        pair = self.production_pair(None if production is None else production.run_id)
        if production is not None and pair is not None and pair.status is not PairStatus.OPEN:
            self.exclude_open_pairs(runs, ABANDONED_REASON)
            self.store.finish_pilot_task(
                self.key,
                row.task_id,
                attempt_id=row.attempt_id,
                status="done",
                run_id=production.run_id,
                at=time.time(),
            )
            return 0
        return self.exclude_open_pairs(runs, ABANDONED_REASON)

    def lost_writes(self, task_id: str, since: float) -> list[LostWrite]:
        """The guard's writes for this task lost since ``since`` (after the guard's queue settled)."""
        return [w for w in self.guard.lost_writes() if w.task_id == task_id and w.at >= since]

    async def run(self, adapter: PilotAdapter, data: Mapping[str, Any], abandoned: int) -> PilotTaskRecord:
        """Run one attempt of a task and record how it ended. Never raises for a store fault: the task is failed
        (in the returned row; the store's row stays ``running`` or ``failed``, so a rerun runs it again)."""
        task_id = str(data.get("task_id", data.get("id")))
        attempt = uuid.uuid4().hex
        began = time.time()
        try:
            row = await self.retrying(
                "start the task",
                lambda: self.store.start_pilot_task(
                    self.key, task_id, attempt_id=attempt, abandoned=abandoned, at=time.time()
                ),
            )
        except StoreUnavailableError as exc:
            failed = PilotTaskStatus.FAILED
            return PilotTaskRecord(self.key, task_id, failed, attempt, 0, 0, time.time(), None, str(exc))
        if row.attempt_id != attempt:  # done by another process meanwhile
            return row
        self.ran += 1
        status, run_id, error = PilotTaskStatus.DONE, None, None
        try:
            await adapter.run_task(PilotTask(task_id, attempt, data))
        except Exception as exc:
            status, error = PilotTaskStatus.FAILED, self.guard.error_text(exc)  # the message may quote tool arguments
        # Each of the task's writes (all queued by now) is written or lost by the end of its retry window plus one
        # bounded try; until then a lost one may not be in `lost` yet, so a task whose writes are not settled
        # within twice the window is failed, never counted done.
        settle_s = 2 * self.guard.config.store_retry_s
        settled = await asyncio.to_thread(self.guard.wait_for_writes, settle_s, task_id=task_id)
        lost = self.lost_writes(task_id, began)
        runs = await self.settled(self.retrying("read the task's runs", lambda: self.attempt_runs(row)), [])
        production = next((r for r in runs if r.parent_run_id is None), None)
        if status is PilotTaskStatus.DONE and lost:
            status, error = (
                PilotTaskStatus.FAILED,
                "store writes lost: " + "; ".join(f"{w.what}: {w.error}" for w in lost),
            )
        elif status is PilotTaskStatus.DONE and not settled:
            status, error = PilotTaskStatus.FAILED, f"store writes still queued after {settle_s:g}s"
        elif status is PilotTaskStatus.DONE and production is None:
            status, error = PilotTaskStatus.FAILED, f"no run carried {ATTEMPT_KEY}={attempt} (adapter bug)"
        if status is PilotTaskStatus.FAILED:
            reason = f"pilot task failed: {error}"
            lost_runs = [w.run_id for w in lost if w.run_id is not None]
            exclude = functools.partial(self.exclude_open_pairs, runs, reason, also=lost_runs)
            await self.settled(self.retrying("exclude pairs", exclude), 0)
        else:
            assert production is not None
            run_id = production.run_id
        at = time.time()
        try:
            await self.retrying(
                "record the task's end",
                lambda: self.store.finish_pilot_task(
                    self.key, task_id, attempt_id=attempt, status=status, run_id=run_id, error=error, at=at
                ),
            )
        except StoreUnavailableError as exc:  # the row stays `running`: the next start resolves it
            unrecorded = f"{exc} (resolved by the next start)"
            status, error = PilotTaskStatus.FAILED, unrecorded if error is None else f"{error}; {unrecorded}"
        return PilotTaskRecord(self.key, task_id, status, attempt, row.attempts, row.abandoned, at, run_id, error)


async def run_pilot(
    suite: PilotSuite,
    guard: CriticGuard,
    *,
    concurrency: int = 4,
    limit: int | None = None,
    level: float = 0.95,
    seed: int = 0,
    progress: PilotProgress | None = None,
) -> PilotResult:
    """Run the suite's tasks (the first ``limit``) through ``guard``, ``concurrency`` at a time; resume if the
    store holds an earlier, interrupted run of the same pilot (same suite name and guard key)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if limit is not None and limit < 1:
        raise ValueError(f"the number of tasks must be >= 1, got {limit}")
    store = guard.store
    if store is None:
        raise ValueError("a pilot needs a store (it records which tasks are done, to resume after a crash)")
    tasks = suite.tasks[:limit] if limit is not None else suite.tasks
    ids = suite.task_ids()[: len(tasks)]
    shown = progress or _Silent()
    pilot = _Pilot(guard, store, f"{suite.name}|{guard.guard_key}")
    lost_before = len(guard.lost_writes())
    await pilot.retrying("complete pairs", guard.complete_pairs)  # pairs a crash left open with both outcomes in
    rows = {row.task_id: row for row in await pilot.retrying("read tasks", lambda: store.pilot_tasks(pilot.key))}
    abandoned = {}
    for tid, r in rows.items():
        if tid in set(ids) and r.status is PilotTaskStatus.RUNNING:
            abandoned[tid] = await pilot.retrying("resolve an interrupted task", functools.partial(pilot.resolve, r))
        elif tid in set(ids) and r.status is PilotTaskStatus.FAILED:  # its exclusions may have been lost with it
            runs = await pilot.retrying("read a failed task's runs", functools.partial(pilot.attempt_runs, r))
            reason = f"pilot task failed: {r.error}"
            await pilot.retrying(
                "exclude a failed task's pairs", functools.partial(pilot.exclude_open_pairs, runs, reason)
            )
    rows = {row.task_id: row for row in await pilot.retrying("read tasks", lambda: store.pilot_tasks(pilot.key))}
    tally = Tally(total=len(tasks))
    todo: list[tuple[Mapping[str, Any], int]] = []
    for data, task_id in zip(tasks, ids, strict=True):
        row = rows.get(task_id)
        if row is not None and row.status is PilotTaskStatus.DONE:
            tally.add(row, await pilot.retrying("read a pair", functools.partial(pilot.production_pair, row.run_id)))
        else:
            todo.append((data, abandoned.get(task_id, 0)))
    skipped = tally.done
    shown.update(tally, _running_verdict(tally.counts, level))
    gate = asyncio.Semaphore(concurrency)

    async def one(data: Mapping[str, Any], lost: int) -> None:
        async with gate:
            row = await pilot.run(adapter, data, lost)
        try:
            pair = await pilot.retrying("read the pair", functools.partial(pilot.production_pair, row.run_id))
        except StoreUnavailableError as exc:  # done, but unverifiable now: not counted; the next start reads it
            row = replace(row, status=PilotTaskStatus.FAILED, error=str(exc))
            pair = None
        tally.add(row, pair)
        shown.update(tally, _running_verdict(tally.counts, level))

    async with suite.adapter(guard) as adapter:
        await asyncio.gather(*(one(data, lost) for data, lost in todo))
    report = analyze(tally.counts, level=level, seed=seed) if tally.counts.n else None
    lifecycle = await pilot.settled(pilot.retrying("read the lifecycle", guard.lifecycle), None)
    lost_writes = len(guard.lost_writes()) - lost_before
    return PilotResult(pilot.key, guard.guard_key, tally, pilot.ran, skipped, lifecycle, report, lost_writes)


class _Silent:
    """Quiet mode: no progress output (tests, ``--json`` to a pipe)."""

    def update(self, tally: Tally, verdict: str | None) -> None:
        return None
