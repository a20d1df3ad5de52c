"""ShadowToolGate and ShadowRunner on a real create_agent graph: a branch forked at step 0 of a run that looks
something up (read-only) and then sends an e-mail (a side effect counted on every real execution)."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from calc_agent import GuardFactory, task_input, thread
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime
from test_fork import ForkPoints
from typing_extensions import TypedDict

from critic_guard.guard import CriticGuard
from critic_guard.store.base import PairStatus
from critic_guard.types import Action, Arm, Verdict
from critic_guard_langgraph.runner import ForkPoint, ShadowRunner, shadow_thread_id
from critic_guard_langgraph.shadow import (
    BRANCH_KEY,
    FORKED,
    READ_ONLY,
    ShadowBranch,
    ShadowIncomplete,
    ShadowToolGate,
    ToolSafety,
)
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call


class Env(TypedDict):
    """The runtime context: the world the e-mail tool writes to."""

    outbox: list[str]


SENT: list[str] = []  # every real execution of send_email, whichever branch


@tool
def lookup(name: str) -> str:
    """Look up a contact's address."""
    return f"{name}@example.com"


@tool
def send_email(to: str, runtime: ToolRuntime[Env]) -> str:
    """Send an e-mail (a side effect)."""
    SENT.append(to)
    runtime.context["outbox"].append(to)
    return f"sent to {to}"


def policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
    k = sum(isinstance(m, AIMessage) and bool(m.tool_calls) for m in messages)
    if k == 0:
        return tool_call("lookup", name="ada")
    if k == 1:
        last = messages[-1]
        assert isinstance(last, ToolMessage)
        return tool_call("send_email", to=last.text)
    return f"done: {messages[-1].text}"


@pytest.fixture(autouse=True)
def _clear_sent() -> Iterator[None]:
    SENT.clear()
    yield
    SENT.clear()


def build(saver: Any, safety: dict[str, ToolSafety]) -> tuple[Any, ForkPoints]:
    points = ForkPoints()
    agent = create_agent(
        ScriptedChatModel(policy=policy),
        [lookup, send_email],
        middleware=[points, ShadowToolGate(safety)],
        checkpointer=saver,
        context_schema=Env,
    )
    return agent, points


def open_branch(guard: CriticGuard, points: ForkPoints) -> tuple[str, ShadowBranch, ForkPoint]:
    """What the middleware does at a first flag: the production run is control, the branch is treatment."""
    prod = guard.start_run(run_id="prod-run", task={"task_id": "t1"}, arm=Arm.CONTROL)
    branch_id = guard.start_run(task={"task_id": "t1"}, arm=Arm.TREATMENT, parent_run_id=prod, fork_step=0)
    guard.open_pair(prod, control_run_id=prod, treatment_run_id=branch_id, flagged=True, fork_step=0)
    thread_id, checkpoint_id, task_id = points.points[0]
    branch = ShadowBranch(pair_id=prod, run_id=branch_id, arm=Arm.TREATMENT, fork_step=0, action=Action.NONE)
    return prod, branch, ForkPoint(thread_id, checkpoint_id, task_id)


def run_production(agent: Any, outbox: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = agent.invoke(task_input("mail ada"), thread("prod"), context={"outbox": outbox})
    assert out["messages"][-1].text == "done: sent to ada@example.com"
    assert SENT == outbox == ["ada@example.com"]
    return out


def ok_judge(task: Any, state: Any) -> bool:
    return str(state["messages"][-1].text).startswith("done")


def test_undeclared_side_effect_stops_the_branch_before_it_runs(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    agent, points = build(saver, {"lookup": READ_ONLY})
    run_production(agent, [])
    _prod, branch, fork = open_branch(guard, points)
    runner = ShadowRunner(agent, guard, judge=ok_judge)

    assert runner.submit(branch, fork, task={}, context={"outbox": []}).result(timeout=10) is None
    assert runner.wait(5)

    assert SENT == ["ada@example.com"]  # the production e-mail only
    [pair] = guard.pairs()
    assert (pair.status, pair.reason) == (PairStatus.INCOMPLETE, "tool 'send_email': undeclared side effects")
    assert guard.lifecycle().incomplete == 1 and guard.lifecycle().monitor.t == 0
    # the branch ran the read-only lookup, then stopped at the e-mail: its last message proposes it
    state = agent.get_state(thread(shadow_thread_id(fork, branch)))
    assert [type(m).__name__ for m in state.values["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert state.values["messages"][-1].tool_calls[0]["name"] == "send_email"
    runner.close()


def test_emulated_tool_completes_the_pair(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    emails: list[dict[str, Any]] = []

    def emulate(args: dict[str, Any]) -> str:
        emails.append(args)
        return "queued (emulated)"

    agent, points = build(saver, {"lookup": READ_ONLY, "send_email": ToolSafety(emulate=emulate)})
    run_production(agent, [])
    prod, branch, fork = open_branch(guard, points)
    runner = ShadowRunner(agent, guard, judge=ok_judge)

    assert runner.run(branch, fork, task={}, context={"outbox": []}) is True
    assert SENT == ["ada@example.com"] and emails == [{"to": "ada@example.com"}]
    messages = agent.get_state(thread(shadow_thread_id(fork, branch))).values["messages"]
    assert messages[-1].text == "done: queued (emulated)"
    assert [u.pair.status for u in guard.record_outcome(prod, False)] == [PairStatus.COMPLETE]
    [pair] = guard.pairs()
    assert (pair.control_success, pair.treatment_success) == (False, True)
    assert guard.lifecycle().monitor.t == 1


def test_forked_tool_runs_against_the_forked_environment(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    agent, points = build(saver, {"lookup": READ_ONLY, "send_email": FORKED})
    production_outbox: list[str] = []
    run_production(agent, production_outbox)
    _prod, branch, fork = open_branch(guard, points)
    forked: list[dict[str, list[str]]] = []

    def fork_context(context: dict[str, list[str]]) -> dict[str, list[str]]:
        forked.append({"outbox": list(context["outbox"])})
        return forked[-1]

    runner = ShadowRunner(agent, guard, judge=ok_judge, fork_context=fork_context)
    assert runner.run(branch, fork, task={}, context={"outbox": production_outbox}) is True
    assert production_outbox == ["ada@example.com"]  # untouched by the branch
    assert forked == [{"outbox": ["ada@example.com", "ada@example.com"]}]  # the branch wrote to its copy
    assert SENT == ["ada@example.com"] * 2


def test_forked_tool_without_fork_context_is_refused(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    agent, points = build(saver, {"lookup": READ_ONLY, "send_email": FORKED})
    run_production(agent, [])
    _, branch, fork = open_branch(guard, points)
    assert ShadowRunner(agent, guard, judge=ok_judge).run(branch, fork, task={}, context={"outbox": []}) is None
    [pair] = guard.pairs()
    assert pair.reason == "tool 'send_email': declared forked, but the runner has no fork_context"
    assert SENT == ["ada@example.com"]


def test_a_failing_judge_excludes_the_pair_and_never_raises(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    agent, points = build(saver, {"lookup": READ_ONLY, "send_email": ToolSafety(emulate=lambda a: "ok")})
    run_production(agent, [])
    _, branch, fork = open_branch(guard, points)

    def judge(task: Any, state: Any) -> bool:
        raise RuntimeError("judge down")

    assert ShadowRunner(agent, guard, judge=judge).run(branch, fork, task={}) is None
    [pair] = guard.pairs()
    # the message may quote content: with capture off the store keeps the type alone
    assert (pair.status, pair.reason) == (PairStatus.INCOMPLETE, "branch failed: RuntimeError")
    [run] = [r for r in guard.store.runs(guard.guard_key) if r.run_id == branch.run_id]  # type: ignore[union-attr]
    assert run.status == "failed"


def test_async_judge_in_a_sync_runner(saver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    agent, points = build(saver, {"lookup": READ_ONLY, "send_email": ToolSafety(emulate=lambda a: "ok")})
    run_production(agent, [])
    _, branch, fork = open_branch(guard, points)

    async def judge(task: Any, state: Any) -> bool:
        return False

    assert ShadowRunner(agent, guard, judge=judge).submit(branch, fork, task={}).result(timeout=10) is False


async def test_async_branches_are_drained(asaver: Any, make_guard: GuardFactory) -> None:
    guard = make_guard(lambda ctx: Verdict(0.1), mode="pilot")
    agent, points = build(asaver, {"lookup": READ_ONLY})
    out = await agent.ainvoke(task_input("mail ada"), thread("prod"), context={"outbox": []})
    assert out["messages"][-1].text == "done: sent to ada@example.com"
    _, branch, fork = open_branch(guard, points)

    async def judge(task: Any, state: Any) -> bool:
        return True

    runner = ShadowRunner(agent, guard, judge=judge)
    created = runner.asubmit(branch, fork, task={}, context={"outbox": []})
    await runner.drain()
    assert created.done() and created.result() is None
    assert SENT == ["ada@example.com"]
    [pair] = await asyncio.to_thread(guard.pairs)
    assert pair.status is PairStatus.INCOMPLETE and pair.reason is not None and "send_email" in pair.reason


def test_runner_needs_a_checkpointer(make_guard: GuardFactory) -> None:
    agent, _ = build(None, {})
    with pytest.raises(ValueError, match="compile the graph with a checkpointer"):
        ShadowRunner(agent, make_guard(lambda ctx: Verdict(0.1)))


def test_tool_safety_declarations_are_validated() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ToolSafety()
    with pytest.raises(ValueError, match="exactly one"):
        ToolSafety(read_only=True, forked=True)
    with pytest.raises(TypeError, match="ToolSafety"):
        ShadowToolGate({"x": "read_only"})  # type: ignore[dict-item]
    branch = ShadowBranch("p", "r", Arm.TREATMENT, 3, Action.ROLLBACK, "check step 3", 0.9)
    assert ShadowBranch.from_config({"configurable": {BRANCH_KEY: branch.to_config()}}) == branch
    copied = ShadowBranch.from_config(copy.deepcopy({"configurable": {BRANCH_KEY: branch.to_config()}}))
    assert copied is not None and copied.stop is branch.stop  # a copied config still shares the branch's stop
    assert ShadowBranch.from_config({"configurable": {}}) is None
    assert "tool 'x'" in str(ShadowIncomplete("x"))
