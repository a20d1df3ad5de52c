"""Store faults on the user's path (docs/faults.md): a locked SQLite store at a production run's first flag.

Another connection takes the database write lock (``BEGIN IMMEDIATE``) inside the critic call that flags step 2
of the calculator task, and holds it until the run has returned. The fork path (the branch's run, the pair), the
production run's end and outcome, and the branch's end all meet the lock. The run must return normally after one
bounded wait (``store_wait_s``), never the store's own busy timeout (here an hour, so that waiting it is a deadlock,
not a slow run); the writes wait in the guard's queue, and once the lock is released the pair completes with the
cells of an undisturbed run: nothing open, nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from calc_agent import RIGHT, SHADOW_TOOLS, build_agent, calc_model, oracle_critic, task_input, thread
from langgraph.checkpoint.memory import InMemorySaver
from pilot_suites import CELL, KINDS, calc_suite
from pilot_suites import judge as pilot_judge

from critic_guard.guard import CriticGuard
from critic_guard.pilot import run_pilot
from critic_guard.policy import Policy
from critic_guard.report.status import status_rows
from critic_guard.store.base import PairStatus
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.types import Arm, StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.runner import ForkPoint, ShadowRunner
from critic_guard_langgraph.shadow import ShadowBranch

WAIT_S = 0.1
# The store's own busy timeout is an hour: a store call on the user's path that is not bounded by `store_wait_s`
# waits for the lock, which is released only after the request returned, so it deadlocks instead of being slow.
# JOIN_S only ends such a deadlock; a correct guard returns however loaded the machine (nothing here is timed).
UNBOUNDED_S = 3600.0
JOIN_S = 60.0


def judge(task: Any, state: Any) -> bool:
    return bool(state["messages"][-1].text == RIGHT)


class LockAtFirstFlag:
    """The oracle critic; at its first flag another connection takes the store's write lock and keeps it."""

    def __init__(self, db: Path) -> None:
        self.blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.held = threading.Event()

    def __call__(self, ctx: StepContext) -> Verdict:
        verdict = oracle_critic(ctx)
        if verdict.p_fail > 0.5 and not self.held.is_set():
            self.blocker.execute("BEGIN IMMEDIATE")
            self.held.set()
        return verdict

    def release(self) -> None:
        self.blocker.execute("COMMIT")
        self.blocker.close()


@pytest.mark.parametrize("api", ["invoke", "ainvoke"])
@pytest.mark.parametrize("mode", ["pilot", "auto"])
def test_a_store_locked_at_the_first_flag_costs_one_bounded_wait_and_loses_no_pair(
    mode: str, api: str, tmp_path: Path
) -> None:
    db = tmp_path / "guard.db"
    critic = LockAtFirstFlag(db)
    store = SQLiteStore(db, busy_timeout_s=UNBOUNDED_S)
    guard = CriticGuard(
        critic, mode=mode, policy=Policy(min_step=0), store=store, agent_name="calc", store_wait_s=WAIT_S
    )
    model, _ = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], InMemorySaver())
    outcome: dict[str, Any] = {}

    async def arun() -> None:
        outcome["out"] = await agent.ainvoke(task_input(), thread("prod"))
        outcome["counters"] = guard.counters
        await middleware.drain()  # the verdicts and the branch run on this loop; its writes queue behind the lock too

    def user_request() -> None:
        try:
            if api == "invoke":
                outcome["out"] = agent.invoke(task_input(), thread("prod"))
                outcome["counters"] = guard.counters
            else:
                asyncio.run(arun())
        except BaseException as exc:  # the test asserts there is none
            outcome["error"] = exc

    try:
        request = threading.Thread(target=user_request)
        request.start()
        request.join(JOIN_S)
        stuck = sys._current_frames().get(request.ident or 0)
        where = "".join(traceback.format_stack(stuck)) if stuck is not None else ""
        assert not request.is_alive(), f"the user's request waited on the locked store, at:\n{where}"
        assert critic.held.wait(JOIN_S)  # the flag is judged off the user's path: maybe after the request ended
        deadline = time.monotonic() + 10  # hold the lock until the guard's writer thread has met it
        while guard.counters.store_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        critic.release()
    request.join()
    assert "error" not in outcome
    assert outcome["out"]["messages"][-1].text == "44"  # production (control) ran to its normal end
    during = outcome["counters"]
    assert during.store_lost == 0
    # the user's request handed its run, fork, pair, end and outcome writes to the guard's writer thread without
    # waiting (in auto mode a lifecycle read may have waited once); the writer met the lock and queued the rest
    assert during.store_errors <= 1 + (mode == "auto")

    assert middleware.wait(30) and guard.wait_for_writes(30)
    after = guard.counters
    assert after.store_errors >= 1 and after.store_deferred >= 1  # the writer's attempt met the lock, then retried
    [pair] = guard.pairs()
    assert (pair.status, pair.flagged, pair.fork_step) == (PairStatus.COMPLETE, True, 2)
    assert (pair.control_success, pair.treatment_success) == (False, True)  # the undisturbed run's cell
    assert guard.counters.store_lost == 0 and guard.lost_writes() == ()
    assert guard.counters.store_recovered == guard.counters.store_deferred
    assert guard.counters.forks_skipped == {}
    assert guard.store is not None
    [row] = status_rows(guard.store)
    assert (row["open"], row["incomplete"], row["evidence"]["pairs"]) == (0, 0, 1)
    guard.close()
    store.close()


def test_a_failed_branch_is_excluded_even_when_its_run_cannot_be_ended(tmp_path: Path) -> None:
    """The branch's run was never recorded (its write was lost), so ending it raises; the pair is excluded anyway."""
    guard = CriticGuard(oracle_critic, mode="pilot", store=f"sqlite:///{tmp_path / 'guard.db'}", agent_name="calc")
    model, _ = calc_model(bad_step=2)
    saver = InMemorySaver()
    runner = ShadowRunner(build_agent(model, [], saver), guard, judge=judge, wait_s=0.01)
    production = guard.start_run(run_id="prod", task={"task_id": "t1"}, arm=Arm.CONTROL)
    guard.open_pair(production, control_run_id=production, treatment_run_id="ghost", flagged=True, fork_step=2)
    branch = ShadowBranch(pair_id=production, run_id="ghost", arm=Arm.TREATMENT, fork_step=2)
    missing = ForkPoint("prod", "no-such-checkpoint", "task")  # the clone fails: the branch cannot run

    assert runner.run(branch, missing, task={"task_id": "t1"}) is None
    [pair] = guard.pairs()
    assert pair.status is PairStatus.INCOMPLETE and pair.reason is not None
    assert pair.reason.startswith("branch failed:")
    assert guard.lifecycle().incomplete == 1
    assert guard.store is not None
    [row] = status_rows(guard.store)
    assert (row["open"], row["incomplete"]) == (0, 1)
    runner.close()
    guard.close()


class LockUntilLost(logging.Handler):
    """Takes the store's write lock at ``TRIGGER``'s production judge and holds it until the guard has given up on
    an outcome of ``TRIGGER`` (its retry window demonstrably passed: the loss is logged), then releases it.

    Driven by that event, not by a duration: however loaded the machine, ``TRIGGER``'s pair cannot complete (an
    outcome is lost, and with it every write queued before it), and the lock is gone as soon as that is so.
    ``SAFETY_S`` only keeps a broken guard from hanging the test (which then fails)."""

    TRIGGER = "t03"
    SAFETY_S = 60.0

    def __init__(self, db: Path) -> None:
        super().__init__(logging.ERROR)
        self.db = db
        self.thread: threading.Thread | None = None
        self.taken, self.lost = threading.Event(), threading.Event()

    def emit(self, record: logging.LogRecord) -> None:  # WriteQueue.note_lost: "%s of run %s (task %s) is lost: %s"
        args = record.args if isinstance(record.args, tuple) and len(record.args) == 4 else (None,) * 4
        if str(record.msg).endswith("is lost: %s") and args[0] == "record_outcome" and args[2] == self.TRIGGER:
            self.lost.set()

    def _hold(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        self.taken.set()
        self.lost.wait(self.SAFETY_S)
        conn.execute("COMMIT")
        conn.close()

    def judge(self, task: Any, state: Any) -> bool:
        if task["task_id"] == self.TRIGGER and self.thread is None:
            self.thread = threading.Thread(target=self._hold)
            self.thread.start()
            self.taken.wait()
        return pilot_judge(task, state)


def test_writes_lost_past_the_retry_window_fail_their_tasks_by_name_and_a_rerun_runs_them(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    lock = LockUntilLost(db)
    kinds = tuple(KINDS[i % len(KINDS)] for i in range(12))
    options = {"store_wait_s": 0.05, "store_retry_s": 0.3}
    suite = calc_suite(kinds, name="lossy", judge_fn=lock.judge, **options)
    logger = logging.getLogger("critic_guard")
    logger.addHandler(lock)
    try:
        with suite.guard(mode="pilot", store=f"sqlite:///{db}") as guard:
            first = asyncio.run(run_pilot(suite, guard, concurrency=2))
            lost = guard.lost_writes()
    finally:
        logger.removeHandler(lock)
        lock.lost.set()  # whatever happened, let the lock go
    assert lock.thread is not None
    lock.thread.join()

    assert not first.ok and first.tally.failed > 0  # `critic-guard pilot` exits 1 on this
    assert LockUntilLost.TRIGGER in first.tally.failures
    assert first.to_dict()["failed_tasks"] == dict(sorted(first.tally.failures.items()))
    lost_tasks = {w.task_id for w in lost}
    assert ("record_outcome", LockUntilLost.TRIGGER) in {(w.what, w.task_id) for w in lost}
    assert first.lost_writes == len(lost)
    assert lost_tasks <= set(first.tally.failures)  # every lost write names a failed task, none counted done
    assert all(why for why in first.tally.failures.values())

    rerun_suite = calc_suite(kinds, name="lossy", **options)
    with rerun_suite.guard(mode="pilot", store=f"sqlite:///{db}") as guard:
        second = asyncio.run(run_pilot(rerun_suite, guard, concurrency=2))
        assert guard.store is not None
        [status] = status_rows(guard.store)
        open_pairs = guard.pairs(PairStatus.OPEN)
        excluded = [p.reason or "" for p in guard.pairs(PairStatus.INCOMPLETE)]
    assert second.ok
    # Only failed tasks run again, the trigger among them. A task failed as "store writes still queued" whose writes
    # then landed is complete in the store and is not run twice, so the rerun may run fewer; the cells below show that
    # nothing was lost either way.
    assert 1 <= second.ran <= first.tally.failed
    expected = dict.fromkeys(("n00", "n01", "n10", "n11"), 0)
    for kind in kinds:
        expected[CELL[kind]] += 1
    assert second.to_dict()["pairs"] == expected  # the final cells are an undisturbed run's
    assert open_pairs == [] and status["open"] == 0  # the failed attempts' pairs were excluded, none left open
    # and shown as excluded, with their reasons (how many depends on which pair writes were themselves lost behind the
    # lock, before any pair existed to exclude, and which landed first: the machine's timing)
    assert status["incomplete"] == len(excluded)
    assert all("store writes lost:" in why or "still queued" in why for why in excluded)


def test_a_fork_the_runner_can_no_longer_run_is_excluded_not_lost(tmp_path: Path) -> None:
    guard = CriticGuard(oracle_critic, mode="pilot", policy=Policy(min_step=0), store=f"sqlite:///{tmp_path / 'g.db'}")
    model, _ = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], InMemorySaver())
    assert middleware.runner is not None
    middleware.runner.close()  # e.g. a pilot shutting down while production still runs
    out = agent.invoke(task_input(), thread("prod"))
    assert out["messages"][-1].text == "44"  # the user's request is unaffected
    assert middleware.wait(10)  # the flag was judged off the user's path; its fork met the closed runner
    [pair] = guard.pairs()
    assert pair.status is PairStatus.INCOMPLETE and pair.reason is not None
    assert pair.reason.startswith("branch failed: RuntimeError")
    guard.close()
