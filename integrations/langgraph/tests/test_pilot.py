"""Pilot mode of CriticGuardMiddleware end to end: real create_agent graph, scripted model, shadow branches.

The calculator task with ``bad_step=2``: unguarded (control) it answers 44; with a rollback and feedback at step 2
(treatment) the retry sees the note and answers 42. The oracle critic flags exactly the wrong step.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from calc_agent import (
    RIGHT,
    SHADOW_TOOLS,
    GuardFactory,
    build_agent,
    calc_model,
    comparable,
    oracle_critic,
    task_input,
    thread,
)
from langchain_core.messages import ToolMessage

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store.base import PairKind, PairStatus
from critic_guard.types import Action, Arm
from critic_guard_langgraph import CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.fork import ForkError
from critic_guard_langgraph.shadow import READ_ONLY


def judge(task: Any, state: Any) -> bool:
    return bool(state["messages"][-1].text == RIGHT)


async def ajudge(task: Any, state: Any) -> bool:
    return judge(task, state)


def pilot_guard(make_guard: GuardFactory, **config: Any) -> CriticGuard:
    return make_guard(oracle_critic, mode="pilot", policy=Policy(min_step=0), **config)


def branch_thread(guard: CriticGuard, pair_id: str) -> str:
    [pair] = [p for p in guard.pairs() if p.pair_id == pair_id]
    branch = pair.treatment_run_id if pair.control_run_id == pair_id else pair.control_run_id
    return f"prod~shadow~{branch}"


def test_flagged_task_forks_once_and_completes_a_pair(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, calls = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], saver)

    out = agent.invoke(task_input(), thread("prod"))
    assert middleware.wait(10)

    assert out["messages"][-1].text == "44"  # production serves control: no intervention
    [pair] = guard.pairs()
    assert (pair.status, pair.flagged, pair.fork_step) == (PairStatus.COMPLETE, True, 2)
    assert (pair.control_success, pair.treatment_success) == (False, True)
    assert guard.lifecycle().monitor.t == 1
    # the branch forked at the flagged step: the checkpoint its model node ran from (the history up to step 1's
    # tool result), shared exactly by production, which went on with the flagged proposal, and the branch
    fork = agent.get_state({"configurable": {"thread_id": "prod", "checkpoint_id": pair.fork_checkpoint_id}})
    prefix = fork.values["messages"]
    assert isinstance(prefix[-1], ToolMessage) and prefix[-1].text == "20"
    served = agent.get_state(thread("prod")).values["messages"]
    branch = agent.get_state(thread(branch_thread(guard, pair.pair_id))).values["messages"]
    assert comparable(served[: len(prefix)]) == comparable(prefix) == comparable(branch[: len(prefix)])
    assert served[len(prefix)].tool_calls[0]["args"] == {"a": 20, "b": 2}  # the flagged proposal, kept
    note, retry = branch[len(prefix) : len(prefix) + 2]  # withdrawn: the feedback, then the right retry
    assert is_guard_note(note) and retry.tool_calls[0]["args"] == {"a": 20, "b": 1}
    assert branch[-1].text == RIGHT
    assert served[-1].text == "44"  # production head untouched
    # model calls: production 5; the branch only its suffix: the retry of step 2, then steps 3 and 4 (it took the
    # flagged proposal from production instead of asking the model again)
    assert len(calls) == 5 + 3


def test_unflagged_task_costs_one_run_and_counts_as_concordant(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, calls = calc_model()
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], saver)
    out = agent.invoke(task_input(), thread("prod"))
    assert middleware.wait(10)
    assert out["messages"][-1].text == RIGHT
    assert len(calls) == 5
    [pair] = guard.pairs()
    assert pair.control_run_id == pair.treatment_run_id == pair.pair_id
    assert (pair.status, pair.flagged, pair.control_success, pair.treatment_success) == (
        PairStatus.COMPLETE,
        False,
        True,
        True,
    )
    assert guard.lifecycle().monitor.t == 1


def test_serving_treatment_intervenes_in_production_and_shadows_control(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard, serve=Arm.TREATMENT)
    model, calls = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], saver)
    out = agent.invoke(task_input(), thread("prod"))
    assert middleware.wait(10)
    assert out["messages"][-1].text == RIGHT
    [pair] = guard.pairs()
    assert pair.treatment_run_id == pair.pair_id
    assert (pair.status, pair.control_success, pair.treatment_success) == (PairStatus.COMPLETE, False, True)
    branch = agent.get_state(thread(branch_thread(guard, pair.pair_id))).values["messages"]
    assert branch[-1].text == "44"  # the control branch never intervened
    assert len(calls) == 6 + 2  # production: 5 + the retry; control branch: steps 3 and 4


def test_undeclared_tool_never_runs_in_shadow(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, _ = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools={"add": READ_ONLY})
    agent = build_agent(model, [middleware], saver)
    agent.invoke(task_input(), thread("prod"))
    assert middleware.wait(10)
    [pair] = guard.pairs()
    assert (pair.status, pair.reason) == (PairStatus.INCOMPLETE, "tool 'multiply': undeclared side effects")
    branch = agent.get_state(thread(branch_thread(guard, pair.pair_id))).values["messages"]
    assert branch[-1].tool_calls[0]["name"] == "multiply"  # proposed, never run
    assert not any(isinstance(m, ToolMessage) and m.name == "multiply" for m in branch[len(branch) - 2 :])
    assert guard.lifecycle().monitor.t == 0 and guard.lifecycle().incomplete == 1


def test_pilot_without_checkpointer_fails_clearly_at_the_fork(make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, _ = calc_model(bad_step=2)
    agent = build_agent(model, [CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)])
    with pytest.raises(ForkError, match=r"compile the agent with a checkpointer"):
        agent.invoke(task_input(), thread("prod"))


def test_exit_durability_is_refused_at_the_fork(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, _ = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge)
    agent = build_agent(model, [middleware], saver)
    with pytest.raises(ForkError, match='durability="exit"'):
        agent.invoke(task_input(), thread("prod"), durability="exit")


async def test_async_pilot(asaver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, calls = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=ajudge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], asaver)
    out = await agent.ainvoke(task_input(), thread("prod"))
    assert middleware.runner is not None
    await middleware.drain()
    assert out["messages"][-1].text == "44"
    [pair], lifecycle = await asyncio.to_thread(lambda: (guard.pairs(), guard.lifecycle()))
    assert (pair.status, pair.control_success, pair.treatment_success) == (PairStatus.COMPLETE, False, True)
    assert lifecycle.monitor.t == 1
    assert len(calls) == 5 + 3


def test_a_failing_production_judge_never_breaks_the_run(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard)
    model, _ = calc_model()

    def broken(task: Any, state: Any) -> bool:
        raise RuntimeError("judge down")

    middleware = CriticGuardMiddleware(guard, judge=broken, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], saver)
    out = agent.invoke(task_input(), thread("prod"))
    assert out["messages"][-1].text == RIGHT
    assert middleware.wait(10)  # the run's end follows its verdicts, judged off the user's path
    [pair] = guard.pairs()
    assert (pair.status, pair.flagged, pair.control_success) == (PairStatus.OPEN, False, None)  # outcome missing
    assert [u.pair.status for u in guard.record_outcome(pair.pair_id, True)] == [PairStatus.COMPLETE]


def test_aa_fork_measures_rerun_noise_beside_the_ab_pair(saver: Any, make_guard: GuardFactory) -> None:
    guard = pilot_guard(make_guard, aa_fraction=1.0)
    model, calls = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], saver)
    out = agent.invoke(task_input(), thread("prod"))
    assert middleware.wait(10)
    assert out["messages"][-1].text == "44"
    ab, aa = sorted(guard.pairs(), key=lambda p: p.kind.value, reverse=True)
    assert (ab.kind, ab.cell) == (PairKind.AB, "n01")
    assert (aa.kind, aa.pair_id, aa.control_run_id, aa.status) == (
        PairKind.AA,
        f"{ab.pair_id}~aa",
        ab.pair_id,
        PairStatus.COMPLETE,
    )
    assert aa.cell == "n00"  # the second control branch goes wrong as production did: no flip
    record = guard.lifecycle()
    assert (record.monitor.t, record.aa_pairs, record.aa_discordant) == (1, 1, 0)  # A/A never reaches the monitor
    aa_run = guard.store.get_run(aa.treatment_run_id)  # type: ignore[union-attr]
    assert (aa_run.arm, aa_run.parent_run_id, aa_run.fork_step) == (Arm.CONTROL, ab.pair_id, 2)
    [fork_step] = guard.store.steps_of(aa.treatment_run_id)[:1]  # type: ignore[union-attr]
    assert (fork_step.step, fork_step.p_fail, fork_step.action) == (2, 0.9, Action.NONE)
    # production 5; A/B branch: the retry of step 2, steps 3, 4; A/A branch: steps 3, 4 (step 2's tools run as-is)
    assert len(calls) == 5 + 3 + 2


def test_auto_enabled_serves_treatment_and_still_shadows_control(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(oracle_critic, mode="auto", policy=Policy(min_step=0), shadow_fraction=1.0)
    guard.set_state("enabled", reason="benefit shown in staging")
    model, _ = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(guard, judge=judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(model, [middleware], saver)
    out = agent.invoke(task_input(), thread("prod"))
    assert middleware.wait(10)
    assert out["messages"][-1].text == RIGHT  # enabled: production intervenes
    [pair] = guard.pairs()
    assert pair.treatment_run_id == pair.pair_id and pair.cell == "n01"
    assert guard.lifecycle().monitor.t == 1  # the monitor keeps learning while enabled
