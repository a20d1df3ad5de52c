"""Judging off the user's path (docs/pilot-design.md, "Judging off the user's path").

In modes ``observe`` and ``pilot`` (serving control) a run finishes while its critic is still blocked; after the
critic is released and the middleware closed, every step has its verdict row and the pilot's pairs are the ones the
on-path design (``judge_on_path=True``) gives for the same suite. Mode ``on`` still waits for the verdict and acts.
The critic blocks on a ``threading.Event``; the join bounds are deadlock detectors, not timings.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from calc_agent import RIGHT, SHADOW_TOOLS, GuardFactory
from langgraph.checkpoint.memory import InMemorySaver
from pilot_suites import MIXED, build, critic, judge, task

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.offpath import OffPathJudging

DEADLOCK_S = 60  # join bound: only a hang reaches it
TASKS = [task(i, kind) for i, kind in enumerate(MIXED)]


class Gate:
    """A critic (:func:`pilot_suites.critic`) that blocks until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.returned = 0
        self._lock = threading.Lock()

    def __call__(self, ctx: StepContext) -> Verdict:
        self.entered.set()
        self.release.wait()
        with self._lock:
            self.returned += 1
        return critic(ctx)


def make(make_guard: GuardFactory, critic_fn: Any, mode: str, **options: Any) -> tuple[CriticGuard, Any]:
    guard = make_guard(critic_fn, mode=mode, policy=Policy(min_step=0), critic_timeout_s=DEADLOCK_S)
    piloting = {"judge": judge, "shadow_tools": SHADOW_TOOLS} if mode == "pilot" else {}
    return guard, CriticGuardMiddleware(guard, **piloting, **options)


def message(t: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": t["input"]}]}


def config(t: dict[str, Any]) -> dict[str, Any]:
    return {"configurable": {"thread_id": t["task_id"]}}


def pair_outcomes(guard: CriticGuard) -> list[tuple[Any, ...]]:
    """Every pair, as what the statistics rest on (kind, flagged, fork step, status, outcomes), in a fixed order."""
    rows = [
        (p.kind.value, p.flagged, p.fork_step, p.status.value, p.control_success, p.treatment_success)
        for p in guard.pairs()
    ]
    return sorted(rows, key=repr)


def steps_judged(guard: CriticGuard) -> list[tuple[int, bool]]:
    """(steps, all judged) per production run."""
    assert guard.store is not None
    production = [run for run in guard.store.runs(guard.guard_key) if run.parent_run_id is None]
    rows = [guard.store.steps_of(run.run_id) for run in production]
    return [(len(r), all(s.p_fail is not None and s.critic_error is None for s in r)) for r in rows]


def run_all(agent: Any, tasks: list[dict[str, Any]] = TASKS) -> list[str]:
    return [agent.invoke(message(t), config(t))["messages"][-1].text for t in tasks]


async def arun_all(agent: Any) -> list[str]:
    outs = await asyncio.gather(*(agent.ainvoke(message(t), config(t)) for t in TASKS))
    return [out["messages"][-1].text for out in outs]


def on_path_pairs(make_guard: GuardFactory) -> list[tuple[Any, ...]]:
    """The same suite's pairs with every step judged on the path (the design before judging off it)."""
    guard, middleware = make(make_guard, critic, "pilot", judge_on_path=True)
    run_all(build([middleware], InMemorySaver()))
    middleware.close()
    return pair_outcomes(guard)


@pytest.mark.parametrize("mode", ["observe", "pilot"])
def test_runs_finish_while_the_critic_is_blocked(mode: str, saver: Any, make_guard: GuardFactory) -> None:
    gate = Gate()
    guard, middleware = make(make_guard, gate, mode)
    agent = build([middleware], saver)
    answers: list[str] = []
    runs = threading.Thread(target=lambda: answers.extend(run_all(agent)))
    try:
        runs.start()
        runs.join(DEADLOCK_S)
        assert not runs.is_alive()  # every run answered while no verdict could be made
        assert gate.returned == 0 and gate.entered.wait(DEADLOCK_S)
    finally:
        gate.release.set()
    middleware.close()

    assert [a == RIGHT for a in answers] == [k in ("clean", "fragile") for k in MIXED]  # served control: untouched
    assert gate.returned > 0
    assert len(steps_judged(guard)) == len(TASKS)
    assert all(n > 0 and judged for n, judged in steps_judged(guard))
    assert guard.counters.critic_errors == 0 and middleware.background_failures == 0
    if mode == "pilot":
        pairs = pair_outcomes(guard)
        assert len(pairs) == len(TASKS)
        assert [p[1] for p in pairs].count(True) == len(MIXED) - MIXED.count("clean")  # every flagged task forked
        assert all(p[3] == "complete" for p in pairs)
        assert pairs == on_path_pairs(make_guard)
    else:
        assert guard.pairs() == []


@pytest.mark.parametrize("mode", ["observe", "pilot"])
async def test_async_runs_finish_while_the_critic_is_blocked(mode: str, asaver: Any, make_guard: GuardFactory) -> None:
    gate = Gate()
    guard, middleware = make(make_guard, gate, mode)
    agent = build([middleware], asaver)
    try:
        answers = await asyncio.wait_for(arun_all(agent), DEADLOCK_S)
        assert gate.returned == 0
    finally:
        gate.release.set()
    await middleware.aclose()

    assert [a == RIGHT for a in answers] == [k in ("clean", "fragile") for k in MIXED]  # served control: untouched
    assert all(n > 0 and judged for n, judged in await asyncio.to_thread(steps_judged, guard))
    assert guard.counters.critic_errors == 0 and middleware.background_failures == 0
    if mode == "pilot":
        pairs = await asyncio.to_thread(pair_outcomes, guard)
        assert len(pairs) == len(TASKS)
        assert [p[1] for p in pairs].count(True) == len(MIXED) - MIXED.count("clean")  # every flagged task forked
        assert all(p[3] == "complete" for p in pairs)
        assert pairs == await asyncio.to_thread(on_path_pairs, make_guard)


def test_mode_on_waits_for_the_verdict_and_acts(saver: Any, make_guard: GuardFactory) -> None:
    gate = Gate()
    guard, middleware = make(make_guard, gate, "on")
    agent = build([middleware], saver)
    slip = next(t for t in TASKS if "kind=slip" in t["input"])
    answers: list[str] = []
    run = threading.Thread(
        target=lambda: answers.append(agent.invoke(message(slip), config(slip))["messages"][-1].text)
    )
    try:
        run.start()
        assert gate.entered.wait(DEADLOCK_S)
        assert run.is_alive()  # the step waits for its verdict: the critic has not returned
    finally:
        gate.release.set()
    run.join(DEADLOCK_S)
    assert not run.is_alive()
    middleware.close()
    assert answers == [RIGHT]  # the flagged slip was rolled back: the verdict acted before the step went on
    assert guard.counters.total_interventions == 1


def test_fork_context_keeps_judging_on_the_path(make_guard: GuardFactory) -> None:
    _, middleware = make(make_guard, critic, "pilot", fork_context=lambda context: context)
    _, default = make(make_guard, critic, "pilot")
    assert (middleware.judge_on_path, default.judge_on_path) == (True, False)
    middleware.close()
    default.close()


def test_guard_close_alone_finishes_the_background_verdicts(
    saver: Any, make_guard: GuardFactory, tmp_path: Path
) -> None:
    gate = Gate()
    store = SQLiteStore(tmp_path / "kept.db")  # the test's: it stays open after the guard closes
    guard = make_guard(gate, mode="pilot", policy=Policy(min_step=0), critic_timeout_s=DEADLOCK_S, store=store)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build([middleware], saver)
    try:
        answers = run_all(agent)  # returns while every verdict waits
        assert gate.returned == 0
    finally:
        gate.release.set()
    guard.close()  # not middleware.close(): the guard drains the middleware's queue and branches first

    assert [a == RIGHT for a in answers] == [k in ("clean", "fragile") for k in MIXED]
    assert all(n > 0 and judged for n, judged in steps_judged(guard))
    assert [p[3] for p in pair_outcomes(guard)] == ["complete"] * len(TASKS)
    store.close()


def test_the_queue_keeps_each_runs_order_and_counts_failures() -> None:
    queue = OffPathJudging(workers=2, max_pending=2)
    gate = threading.Event()
    seen: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    def held() -> None:
        gate.wait()
        seen.append("a0")

    queue.submit("a", held)  # holds run a's chain: a1 must wait for it although a worker is free
    queue.submit("a", lambda: seen.append("a1"))
    gate.set()
    queue.submit("b", fail)  # the queue was full (max_pending 2): this waits for a place, then runs
    assert queue.close(DEADLOCK_S)
    assert (seen, queue.failures) == (["a0", "a1"], 1)


async def test_the_async_queue_keeps_each_runs_order_and_counts_failures() -> None:
    queue = OffPathJudging()
    release = asyncio.Event()
    seen: list[str] = []

    async def first() -> None:
        await release.wait()
        seen.append("a0")

    async def second() -> None:
        seen.append("a1")

    async def fail() -> None:
        raise RuntimeError("boom")

    await queue.asubmit("a", first, fallback=lambda: None)
    await queue.asubmit("a", second, fallback=lambda: None)
    await queue.asubmit("b", fail, fallback=lambda: None)
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(queue.adrain(), DEADLOCK_S)
    assert (seen, queue.failures) == (["a0", "a1"], 1)


def test_wait_for_one_thread_does_not_wait_for_the_others() -> None:
    queue = OffPathJudging()
    held = threading.Event()
    queue.submit("run-a", held.wait, thread_id="a")
    queue.submit("run-b", lambda: None, thread_id="b")
    assert queue.wait(DEADLOCK_S, thread_id="b")  # b's job is done although a's still waits
    assert not queue.wait(0.01, thread_id="a")
    held.set()
    assert queue.close(DEADLOCK_S)


async def test_adrain_for_one_thread_does_not_wait_for_the_others() -> None:
    queue = OffPathJudging()
    held = asyncio.Event()
    done: list[str] = []

    async def a() -> None:
        await held.wait()
        done.append("a")

    async def b() -> None:
        done.append("b")

    await queue.asubmit("run-a", a, fallback=lambda: None, thread_id="a")
    await queue.asubmit("run-b", b, fallback=lambda: None, thread_id="b")
    await asyncio.wait_for(queue.adrain("b"), DEADLOCK_S)
    assert done == ["b"]
    held.set()
    await asyncio.wait_for(queue.adrain(), DEADLOCK_S)
    assert done == ["b", "a"]


@pytest.mark.parametrize("first_started", [False, True])
def test_jobs_queued_when_their_loop_ends_run_in_threads_in_order(first_started: bool) -> None:
    # asyncio.run(agent.ainvoke(...)) returns while its run's verdicts are still queued: its end cancels them. The
    # jobs that had not started run in threads instead, in the run's order; one cut off mid-way is counted.
    queue = OffPathJudging()
    seen: list[str] = []

    def job(name: str) -> Any:
        async def run() -> None:
            if name == "j0" and first_started:
                await asyncio.Event().wait()  # never set: cut off by the loop's end
            seen.append(name)

        return run

    async def request() -> None:
        for name in ("j0", "j1", "j2"):
            await queue.asubmit("a", job(name), fallback=lambda name=name: seen.append(f"thread {name}"))
            if first_started:
                await asyncio.sleep(0)  # j0 starts (and waits), j1 and j2 wait for it

    asyncio.run(request())
    assert queue.close(DEADLOCK_S)
    if first_started:
        assert (seen, queue.failures, queue.failed("a")) == (["thread j1", "thread j2"], 1, True)
    else:  # each job once, in order; those the loop's end caught before they started ran in a thread
        assert [name.removeprefix("thread ") for name in seen] == ["j0", "j1", "j2"] and "thread j2" in seen
        assert queue.failures == 0


def fail_first_job(middleware: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the first background job that has a verdict raise (a fault inside the job, before any flag); returns
    the list that gets that job's run id."""
    forks = middleware._forks  # the pilot's forks at first flags (critic_guard_langgraph.forking)
    real = forks.first_flag
    failed: list[str] = []

    def first_job_fails(step: Any, review: Any, *args: Any, **kwargs: Any) -> None:
        if review is not None and not failed:
            failed.append(review.run_id)
            raise RuntimeError("fault injected into a background verdict")
        real(step, review, *args, **kwargs)

    monkeypatch.setattr(forks, "first_flag", first_job_fails)
    return failed


def assert_excluded_for_unknown_flag(guard: CriticGuard, middleware: Any, answer: str, failed: list[str]) -> None:
    # where the run would have forked is unknown: it forked no branch at its later flag (step 2), and it is not
    # counted as concordant either: its pair is recorded excluded, with the reason
    assert answer != RIGHT  # served control: the user's run was untouched (the slip stands)
    assert middleware.background_failures == 1
    [pair] = guard.pairs()
    assert (pair.pair_id, pair.flagged, pair.status.value) == (failed[0], False, "incomplete")
    assert pair.reason is not None and "failed before the run's first flag" in pair.reason
    assert guard.lifecycle().monitor.t == 0  # nothing was fed to the statistics


SLIP = next(t for t in TASKS if "kind=slip" in t["input"])


def test_a_failed_background_verdict_excludes_the_runs_pair_with_a_reason(
    saver: Any, make_guard: GuardFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard, middleware = make(make_guard, critic, "pilot")
    failed = fail_first_job(middleware, monkeypatch)
    answer = build([middleware], saver).invoke(message(SLIP), config(SLIP))["messages"][-1].text
    assert middleware.wait(DEADLOCK_S, thread_id=SLIP["task_id"])
    assert_excluded_for_unknown_flag(guard, middleware, answer, failed)
    middleware.close()


async def test_a_failed_async_background_verdict_excludes_the_runs_pair_with_a_reason(
    asaver: Any, make_guard: GuardFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard, middleware = make(make_guard, critic, "pilot")
    failed = fail_first_job(middleware, monkeypatch)
    answer = (await build([middleware], asaver).ainvoke(message(SLIP), config(SLIP)))["messages"][-1].text
    await asyncio.wait_for(middleware.drain(SLIP["task_id"]), DEADLOCK_S)
    await asyncio.to_thread(assert_excluded_for_unknown_flag, guard, middleware, answer, failed)
    await middleware.aclose()
