"""Under load no verdict is lost: a burst of concurrent async runs with a slow sync critic and a small worker pool.

Queue time does not count against the critic's timeout (it starts when a worker starts the call), so every step is
judged however long it waits for a worker; the waits are counted (``counters.critic_queued``) and warned once. The
burst here is CI-sized (200 runs, a 10 ms critic, 1 worker). In mode ``on`` every run's step waits on the user's
path, so a call at the back of the pool's queue waits for 199 others, about 2 s, twice the 1 s timeout (which is 100
times the critic's own time, so that a loaded machine, scheduling a thread late, cannot time the critic itself out).
In mode ``observe`` the steps are judged off the user's path, where the background queue holds them first; the pool
is still saturated. The 1,000-run burst with a 50 ms critic is in docs/critics-and-policy.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from calc_agent import GuardFactory, build_agent, task_input, thread
from langchain_core.messages import AIMessage, BaseMessage

from critic_guard.store.base import StepRecord
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.testing import ScriptedChatModel

RUNS = 200
CRITIC_S = 0.01
WORKERS = 1
TIMEOUT_S = 1.0  # shorter than the wait at the back of the queue in mode "on" (RUNS / WORKERS * CRITIC_S = 2 s)


def one_step_model() -> ScriptedChatModel:
    """Answers at once: one model step per run, judged once."""

    def answer(messages: list[BaseMessage], _: Any) -> AIMessage:
        return AIMessage("done")

    return ScriptedChatModel(policy=answer)


def slow_critic(ctx: StepContext) -> Verdict:
    time.sleep(CRITIC_S)  # a sync critic that blocks (an LLM judge over a sync client): runs in a worker
    return Verdict(0.2)


@pytest.mark.parametrize("mode", ["on", "observe"])
async def test_a_burst_of_concurrent_runs_loses_no_verdict_to_a_full_pool(
    make_guard: GuardFactory, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    guard = make_guard(slow_critic, mode=mode, critic_workers=WORKERS, critic_timeout_s=TIMEOUT_S)
    middleware = CriticGuardMiddleware(guard)
    agent = build_agent(one_step_model(), [middleware])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="critic_guard"):
        outs = await asyncio.gather(*(agent.ainvoke(task_input(), thread(f"t{i}")) for i in range(RUNS)))
        await middleware.aclose()  # observe judges off the user's path: aclose() awaits the background verdicts
    assert time.monotonic() - started > TIMEOUT_S  # the burst outlasted the timeout: a queued call did wait longer

    assert [out["messages"][-1].text for out in outs] == ["done"] * RUNS
    counters = guard.counters
    assert (counters.verdicts, counters.critic_errors, counters.late_verdicts) == (RUNS, 0, 0)  # every step judged
    assert counters.critic_queued > 0  # the pool was saturated, and that was counted
    assert len([r for r in caplog.records if "critic workers are busy" in r.getMessage()]) == 1  # warned once
    steps = await asyncio.to_thread(steps_by_run, guard)
    assert len(steps) == RUNS  # every run recorded (its start and end went through the writer thread)
    assert all([(s.step, s.p_fail, s.critic_error) for s in rows] == [(0, 0.2, None)] for rows in steps.values())


def steps_by_run(guard: Any) -> dict[str, list[StepRecord]]:
    store = guard.store
    return {run.run_id: store.steps_of(run.run_id) for run in store.runs(guard.guard_key)}
