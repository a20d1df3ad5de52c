"""guard_graph on a hand-built StateGraph (MessagesState, a model node and a ToolNode) with real checkpointers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from calc_agent import (
    RIGHT,
    TOOLS,
    GuardFactory,
    assert_rolled_back_at_step_2,
    assert_tool_groups_adjacent,
    calc_model,
    comparable,
    final_answer,
    flags_unchecked_answers,
    notes,
    only_run,
    oracle_critic,
    summary,
    task_input,
    thread,
    wrong_answer,
)
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.types import Action
from critic_guard_langgraph import guard_graph
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

NONE, ROLLBACK, APPEND = Action.NONE, Action.ROLLBACK, Action.APPEND


def build_graph(model: ScriptedChatModel, checkpointer: Any, *, approve_multiply: bool = False) -> Any:
    """agent -> tools -> agent ...; with ``approve_multiply`` a human approves each multiplication first."""
    bound = model.bind_tools(TOOLS)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    async def aagent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    def approve(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        if last.tool_calls[0]["name"] == "multiply":
            assert interrupt({"approve": last.tool_calls[0]["args"]}) == "yes"
        return {}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", RunnableLambda(agent, afunc=aagent))
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "agent")
    if approve_multiply:
        graph.add_node("approve", approve)
        graph.add_conditional_edges("agent", tools_condition, {"tools": "approve", "__end__": "__end__"})
        graph.add_edge("approve", "tools")
    else:
        graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


# -- set-up errors ------------------------------------------------------------------------------------------------


def test_a_checkpointer_a_known_node_and_a_thread_are_required(make_guard: GuardFactory) -> None:
    model, _ = calc_model()
    guard = make_guard(oracle_critic, mode="on")
    with pytest.raises(ValueError, match="checkpointer"):
        guard_graph(build_graph(model, None), guard, judge_after=["agent"])
    graph = build_graph(model, InMemorySaver())
    with pytest.raises(ValueError, match=r"unknown: \['model'\].*nodes: \['agent', 'tools'\]"):
        guard_graph(graph, guard, judge_after=["model"])
    with pytest.raises(ValueError, match="empty"):
        guard_graph(graph, guard, judge_after=[])
    with pytest.raises(ValueError, match="thread_id"):
        guard_graph(graph, guard, judge_after="agent").invoke(task_input(), {})


# -- off and observe ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "observe"])
def test_off_and_observe_end_in_the_unguarded_state(mode: str, saver: Any, make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    graph = build_graph(model, saver)
    plain = graph.invoke(task_input(), thread("plain"))
    guard = make_guard(oracle_critic, mode=mode, policy=Policy(min_step=0))
    out = guard_graph(graph, guard, judge_after=["agent"]).invoke(task_input(), thread("guarded"))
    assert comparable(out["messages"]) == comparable(plain["messages"])
    assert final_answer(out["messages"]) == wrong_answer(2)
    assert guard.store is not None
    if mode == "off":
        assert guard.store.runs() == []
    else:
        assert [r[2:] for r in summary(guard)][2] == (NONE, "observe")
        assert [r[0] for r in summary(guard)] == [0, 1, 2, 3, 4]
        assert only_run(guard).status == "completed"


# -- ROLLBACK -----------------------------------------------------------------------------------------------------


def check_rollback(guard: CriticGuard, out: dict[str, Any]) -> None:
    messages = out["messages"]
    assert final_answer(messages) == RIGHT
    # the withdrawn proposal is not in the new branch; the feedback sits after the last tool result before the retry
    assert [m.tool_calls[0]["args"]["b"] for m in messages if isinstance(m, AIMessage) and m.tool_calls] == [3, 4, 1, 2]
    assert_rolled_back_at_step_2(guard, messages)
    assert only_run(guard).status == "completed"


def test_rollback_resumes_from_the_checkpoint_before_the_node(saver: Any, make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    graph = build_graph(model, saver)
    guard = make_guard(oracle_critic, mode="on")
    out = guard_graph(graph, guard, judge_after=["agent"]).invoke(task_input(), thread())
    check_rollback(guard, out)
    assert comparable(graph.get_state(thread()).values["messages"]) == comparable(out["messages"])
    # the withdrawn step is still in the thread's history, on the abandoned branch
    history = [m for s in graph.get_state_history(thread()) for m in s.values["messages"]]
    withdrawn = [m for m in history if isinstance(m, AIMessage) and m.tool_calls and m.tool_calls[0]["args"]["b"] == 2]
    assert {m.tool_calls[0]["args"]["a"] for m in withdrawn} == {20, 21}  # the bad proposal, and step 3's right one


async def test_rollback_resumes_from_the_checkpoint_before_the_node_async(
    asaver: Any, make_guard: GuardFactory
) -> None:
    model, _ = calc_model(bad_step=2)
    graph = build_graph(model, asaver)
    guard = make_guard(oracle_critic, mode="on")
    out = await guard_graph(graph, guard, judge_after=["agent"]).ainvoke(task_input(), thread())
    check_rollback(guard, out)


def test_silent_rollback_is_bounded_by_the_budget(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(feedback=False, max_interventions=2))
    out = guard_graph(build_graph(model, InMemorySaver()), guard, judge_after=["agent"]).invoke(task_input(), thread())
    assert final_answer(out["messages"]) == wrong_answer(2)
    assert notes(out["messages"]) == []
    assert [r for r in summary(guard) if r[0] == 2] == [
        (2, 0, ROLLBACK, "flag"),
        (2, 1, ROLLBACK, "flag"),
        (2, 2, NONE, "budget_exhausted"),
    ]


# -- APPEND -------------------------------------------------------------------------------------------------------


def check_append(guard: CriticGuard, out: dict[str, Any]) -> None:
    messages = out["messages"]
    assert final_answer(messages) == wrong_answer(2)
    [at] = notes(messages)
    assert isinstance(messages[at - 1], ToolMessage) and messages[at - 1].text == "22"  # after the tool result
    assert isinstance(messages[at + 1], AIMessage)  # right before the next model step
    assert messages[at].text.startswith("Warning from a reviewer")
    assert_tool_groups_adjacent(messages)
    assert [r[:3] for r in summary(guard)] == [(0, 0, NONE), (1, 0, NONE), (2, 0, APPEND), (3, 0, NONE), (4, 0, NONE)]


def test_append_warns_after_the_tool_results(saver: Any, make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="append"))
    out = guard_graph(build_graph(model, saver), guard, judge_after=["agent"]).invoke(task_input(), thread())
    check_append(guard, out)


async def test_append_warns_after_the_tool_results_async(asaver: Any, make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="append"))
    guarded = guard_graph(build_graph(model, asaver), guard, judge_after=["agent"])
    check_append(guard, await guarded.ainvoke(task_input(), thread()))


def test_append_on_a_final_answer_reenters_the_node(make_guard: GuardFactory) -> None:
    model, _ = calc_model(final_suffix_after_note=" (checked)")
    guard = make_guard(flags_unchecked_answers, mode="on", policy=Policy(action="append"))
    out = guard_graph(build_graph(model, InMemorySaver()), guard, judge_after=["agent"]).invoke(task_input(), thread())
    messages = out["messages"]
    assert [m.text for m in messages[-3:]] == ["42", messages[-2].text, "42 (checked)"]
    assert notes(messages) == [len(messages) - 2]
    assert [r[:3] for r in summary(guard)][-2:] == [(4, 0, APPEND), (5, 0, NONE)]


# -- failures and interrupts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["raises", "garbage", "hangs"])
def test_a_failing_critic_never_breaks_or_stalls_the_run(kind: str, make_guard: GuardFactory) -> None:
    release = threading.Event()
    critic = {
        "raises": lambda ctx: 1 / 0,
        "garbage": lambda ctx: {"p_fail": "high"},
        "hangs": lambda ctx: release.wait(60) and 0.9,
    }[kind]
    model, _ = calc_model(bad_step=2)
    graph = build_graph(model, InMemorySaver())
    plain = graph.invoke(task_input(), thread("plain"))
    guard = make_guard(critic, mode="on", policy=Policy(min_step=0, tau=0.0), critic_timeout_s=0.05)
    try:
        out = guard_graph(graph, guard, judge_after=["agent"]).invoke(task_input(), thread())
    finally:
        release.set()
    assert comparable(out["messages"]) == comparable(plain["messages"])
    assert [r[3] for r in summary(guard)] == ["critic_error"] * 5


def test_a_node_interrupt_pauses_the_run_and_resume_continues_it(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on")
    guarded = guard_graph(build_graph(model, InMemorySaver(), approve_multiply=True), guard, judge_after=["agent"])
    paused = guarded.invoke(task_input(), thread())
    assert [i.value for i in paused["__interrupt__"]] == [{"approve": {"a": 5, "b": 4}}]
    assert only_run(guard).status == "running"
    paused = guarded.invoke(Command(resume="yes"), thread())
    assert [i.value for i in paused["__interrupt__"]] == [{"approve": {"a": 21, "b": 2}}]
    out = guarded.invoke(Command(resume="yes"), thread())
    assert "__interrupt__" not in out
    assert final_answer(out["messages"]) == RIGHT
    assert only_run(guard).status == "completed"  # one run across the three calls
    assert [r[:3] for r in summary(guard)] == [
        (0, 0, NONE),
        (1, 0, NONE),
        (2, 0, ROLLBACK),
        (2, 1, NONE),
        (3, 0, NONE),
        (4, 0, NONE),
    ]


def test_a_failing_node_ends_the_run_as_failed(make_guard: GuardFactory) -> None:
    def broken(messages: Any, rng: Any) -> str:
        raise RuntimeError("model down")

    guard = make_guard(oracle_critic, mode="on")
    guarded = guard_graph(build_graph(ScriptedChatModel(policy=broken), InMemorySaver()), guard, judge_after=["agent"])
    with pytest.raises(RuntimeError, match="model down"):
        guarded.invoke(task_input(), thread())
    assert only_run(guard).status == "failed"


def test_a_new_input_abandons_an_interrupted_run(make_guard: GuardFactory) -> None:
    model, _ = calc_model()
    guard = make_guard(oracle_critic, mode="on")
    guarded = guard_graph(build_graph(model, InMemorySaver(), approve_multiply=True), guard, judge_after=["agent"])
    assert "__interrupt__" in guarded.invoke(task_input(), thread())
    assert "__interrupt__" in guarded.invoke(task_input("start over", msg_id="again"), thread())
    assert guard.store is not None
    assert sorted(r.status for r in guard.store.runs()) == ["abandoned", "running"]


def test_an_append_warning_survives_a_node_interrupt(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=1)  # step 1 multiplies by 5: flagged, runs, and needs a human's approval
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="append", min_step=1))
    guarded = guard_graph(build_graph(model, InMemorySaver(), approve_multiply=True), guard, judge_after=["agent"])
    paused = guarded.invoke(task_input(), thread())
    assert [i.value for i in paused["__interrupt__"]] == [{"approve": {"a": 5, "b": 5}}]
    paused = guarded.invoke(Command(resume="yes"), thread())  # step 3 multiplies again
    messages = paused["messages"]
    [at] = notes(messages)
    assert isinstance(messages[at - 1], ToolMessage) and messages[at - 1].text == "25"
    assert isinstance(messages[at + 1], AIMessage) and messages[at + 1].tool_calls[0]["args"] == {"a": 25, "b": 1}
    out = guarded.invoke(Command(resume="yes"), thread())
    assert final_answer(out["messages"]) == wrong_answer(1)
    assert [r[:3] for r in summary(guard)][1] == (1, 0, APPEND)


def test_a_run_can_start_from_an_earlier_checkpoint(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    graph = build_graph(model, InMemorySaver())
    graph.invoke(task_input(), thread())  # unguarded: ends with the wrong answer
    assert final_answer(graph.get_state(thread()).values["messages"]) == wrong_answer(2)
    # time travel to the checkpoint where the agent is about to take step 2 (two tool results in the state)
    before_step_2 = next(
        s
        for s in graph.get_state_history(thread())
        if s.next == ("agent",) and sum(isinstance(m, ToolMessage) for m in s.values["messages"]) == 2
    )
    guard = make_guard(oracle_critic, mode="on", policy=Policy(min_step=0))
    out = guard_graph(graph, guard, judge_after=["agent"]).invoke(None, before_step_2.config)
    assert final_answer(out["messages"]) == RIGHT
    assert [r[:3] for r in summary(guard)] == [(0, 0, ROLLBACK), (0, 1, NONE), (1, 0, NONE), (2, 0, NONE)]


def test_an_endless_agent_still_hits_the_recursion_limit(make_guard: GuardFactory) -> None:
    endless = ScriptedChatModel(policy=lambda messages, rng: tool_call("add", a=1, b=1))
    guard = make_guard(oracle_critic, mode="observe")
    guarded = guard_graph(build_graph(endless, InMemorySaver()), guard, judge_after=["agent"])
    with pytest.raises(GraphRecursionError, match="recursion limit of 7"):
        guarded.invoke(task_input(), {**thread(), "recursion_limit": 7})
    assert only_run(guard).status == "failed"
    assert len(summary(guard)) == 7  # one judged step per call of the graph
