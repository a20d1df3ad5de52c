"""Run a task suite through a guard in a pilot: bounded concurrency, live progress, resumable after a crash.

The runner is framework-neutral. It talks to the agent framework through a :class:`PilotAdapter` (``run_task``
runs one task's production run to its end and awaits its shadow branch), which a suite's ``adapter`` factory builds
for a guard; the LangGraph one is ``critic_guard_langgraph.pilot.LangGraphPilot``. ``critic-guard pilot
module:function`` loads a :class:`PilotSuite` (:func:`load_suite`) and calls :func:`run_pilot`.

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
import importlib
import inspect
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from critic_guard.at_rest import ATTEMPT_KEY
from critic_guard.critic_pool import describe_error
from critic_guard.critics import Critic
from critic_guard.guard import CriticGuard
from critic_guard.lifecycle import GuardRecord
from critic_guard.policy import Policy
from critic_guard.stats.counts import PairedCounts
from critic_guard.stats.report import PilotReport, analyze, verdict_of
from critic_guard.store.base import (
    PairKind,
    PairRecord,
    PairStatus,
    PilotBook,
    PilotTaskRecord,
    PilotTaskStatus,
    RunRecord,
    Store,
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
_RESERVED_OPTIONS = frozenset({"mode", "store", "policy"})
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0
_T = TypeVar("_T")


class SuiteError(ValueError):
    """A suite entry point that cannot be loaded or does not return a valid :class:`PilotSuite`."""


@dataclass(frozen=True, slots=True)
class PilotTask:
    """One attempt at one task, as the adapter sees it."""

    task_id: str
    attempt_id: str
    data: Mapping[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        """What the runs of this attempt must record as their task (``guard.start_run(task=...)``): the task's
        fields, its ``task_id`` and the attempt id. A resumed pilot finds an interrupted attempt's runs by it."""
        return {**self.data, "task_id": self.task_id, ATTEMPT_KEY: self.attempt_id}


class PilotAdapter(Protocol):
    """The framework side of a pilot."""

    async def run_task(self, task: PilotTask) -> None:
        """Run the task's production run to its end (judged, so its outcome is recorded) and await its shadow
        branch, if it forked one. Every run must carry ``task.metadata`` as its task."""
        ...


AdapterFactory = Callable[[CriticGuard], AbstractAsyncContextManager[PilotAdapter]]
"""``factory(guard)`` -> an async context manager that yields the adapter (and cleans up after the pilot)."""


@dataclass(frozen=True)
class PilotSuite:
    """What ``critic-guard pilot module:function`` runs: tasks, the critic and policy under test, the agent.

    ``tasks``: mappings with a unique ``task_id`` (or ``id``) and whatever the adapter needs (e.g. ``input``).
    ``adapter``: builds the framework adapter for a guard (it holds the agent factory and the judge).
    ``guard_options``: other :class:`~critic_guard.config.GuardConfig` fields (``agent_name`` defaults to
    ``name``; ``mode``, ``store`` and ``policy`` come from the command line and the suite's ``policy``).
    """

    name: str
    tasks: Sequence[Mapping[str, Any]]
    critic: Critic | Callable[..., Any]
    adapter: AdapterFactory
    policy: Policy = field(default_factory=Policy)
    guard_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name != self.name.strip():
            raise SuiteError(f"suite name must be non-empty, without '/' or surrounding spaces: {self.name!r}")
        tasks = tuple(self.tasks)
        if not tasks:
            raise SuiteError(f"suite {self.name!r} has no tasks")
        seen: set[str] = set()
        for i, task in enumerate(tasks):
            if not isinstance(task, Mapping):
                raise SuiteError(f"suite {self.name!r}: task {i} is a {type(task).__name__}, not a mapping")
            task_id = task.get("task_id", task.get("id"))
            if task_id is None:
                raise SuiteError(f"suite {self.name!r}: task {i} has no 'task_id'")
            if str(task_id) in seen:
                raise SuiteError(f"suite {self.name!r}: task id {task_id!r} appears twice")
            seen.add(str(task_id))
        reserved = sorted(_RESERVED_OPTIONS & set(self.guard_options))
        if reserved:
            raise SuiteError(f"suite {self.name!r}: guard_options may not set {', '.join(reserved)}")
        if not callable(self.adapter):
            raise SuiteError(f"suite {self.name!r}: adapter must be callable (guard -> async context manager)")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "guard_options", MappingProxyType(dict(self.guard_options)))

    def task_ids(self) -> list[str]:
        return [str(task.get("task_id", task.get("id"))) for task in self.tasks]

    def guard(self, *, mode: str, store: str | Store | None, **overrides: Any) -> CriticGuard:
        """A guard for this suite (agent name, critic, policy, options) in ``mode`` on ``store``."""
        options = {"agent_name": self.name, **self.guard_options, **overrides}
        return CriticGuard(self.critic, mode=mode, policy=self.policy, store=store, **options)


def load_suite(spec: str, *, seed: int | None = None) -> PilotSuite:
    """Import ``module:function`` and call it (with ``seed=`` if it takes one) to get the suite.

    The current directory is importable, as for ``python -m``: a suite beside the project just works.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SuiteError(f"suite must be given as 'module:function', got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SuiteError(f"cannot import suite module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SuiteError(f"module {module_name!r} has no callable {attr!r}")
    takes_seed = "seed" in inspect.signature(factory).parameters
    suite = factory(seed=seed) if takes_seed and seed is not None else factory()
    if not isinstance(suite, PilotSuite):
        raise SuiteError(f"{spec} returned a {type(suite).__name__}, not a critic_guard.pilot.PilotSuite")
    return suite


@dataclass
class Tally:
    """Where a pilot's tasks stand: cells of complete A/B pairs, and what is not counted, and why."""

    total: int
    done: int = 0
    failed: int = 0
    n00: int = 0
    n01: int = 0
    n10: int = 0
    n11: int = 0
    flagged: int = 0  # complete pairs that forked a shadow branch (the rest cost one run)
    incomplete: int = 0  # pairs of done tasks whose branch could not finish (excluded)
    abandoned: int = 0  # pairs of interrupted attempts (excluded)
    open: int = 0  # done tasks whose pair still waits for an outcome
    unpaired: int = 0  # done tasks without a pair (e.g. AUTO once disabled)
    failures: dict[str, str] = field(default_factory=dict)  # failed task id -> why (a rerun runs them again)

    @property
    def counts(self) -> PairedCounts:
        return PairedCounts(self.n00, self.n01, self.n10, self.n11)

    def add(self, row: PilotTaskRecord, pair: PairRecord | None) -> None:
        """Count one task's final row and its production pair."""
        self.abandoned += row.abandoned
        if row.status is PilotTaskStatus.FAILED:
            self.failed += 1
            self.failures[row.task_id] = row.error or "no reason recorded"
            return
        if row.status is not PilotTaskStatus.DONE:
            return
        self.done += 1
        if pair is None:
            self.unpaired += 1
        elif pair.status is PairStatus.INCOMPLETE:
            self.incomplete += 1
        elif pair.cell is None:
            self.open += 1
        else:
            setattr(self, pair.cell, getattr(self, pair.cell) + 1)
            self.flagged += pair.flagged


class PilotProgress(Protocol):
    """What the runner reports while it runs (``critic_guard.pilot_view.RichProgress`` draws it)."""

    def update(self, tally: Tally, verdict: str | None) -> None: ...


@dataclass(frozen=True)
class PilotResult:
    """The outcome of one :func:`run_pilot` call (of the whole pilot so far, resumed parts included)."""

    pilot_key: str
    guard_key: str
    tally: Tally
    ran: int  # attempts this call ran
    skipped: int  # tasks already done when this call started
    lifecycle: GuardRecord | None  # None when the store could not be read at the end
    report: PilotReport | None  # None while no pair is complete
    lost_writes: int = 0  # the guard's run, outcome and pair writes lost in this call (their tasks failed)

    @property
    def ok(self) -> bool:
        """Whether every task ran and was recorded (else ``critic-guard pilot`` exits non-zero)."""
        return not self.tally.failed and not self.lost_writes

    def to_dict(self) -> dict[str, Any]:
        t = self.tally
        return {
            "pilot_key": self.pilot_key,
            "guard_key": self.guard_key,
            "tasks": t.total,
            "done": t.done,
            "failed": t.failed,
            "failed_tasks": dict(sorted(t.failures.items())),
            "lost_writes": self.lost_writes,
            "ran": self.ran,
            "skipped": self.skipped,
            "pairs": {"n00": t.n00, "n01": t.n01, "n10": t.n10, "n11": t.n11},
            "flagged": t.flagged,
            "incomplete": t.incomplete,
            "abandoned": t.abandoned,
            "open": t.open,
            "unpaired": t.unpaired,
            "lifecycle": None if self.lifecycle is None else self.lifecycle.state.value,
            "report": None if self.report is None else self.report.to_dict(),
        }


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
