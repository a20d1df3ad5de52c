"""A small calculator agent shared by the integration tests: real tools, a scripted model, a known right answer.

The task is ``((2 + 3) * 4 + 1) * 2 = 42`` in four tool steps, then a final answer (step 4). With ``bad_step=k``
the model gets step ``k``'s operand wrong (one too high) unless a guard note is in its input, so:

* unguarded, the run ends with a wrong answer (44 for ``bad_step=2``);
* after a ROLLBACK with feedback, the retry sees the note and takes the right step, and the run answers 42.

``oracle_critic`` knows the plan: it flags (p_fail 0.9) a proposed tool call with a wrong operand, else 0.1;
``flags_unchecked_answers`` flags a final answer until the model says it checked it (``final_suffix_after_note``).
``calc_model`` also returns the list in which the model records every input it receives (for assertions only;
its output never depends on it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from critic_guard.guard import CriticGuard
from critic_guard.store.base import RunRecord
from critic_guard.types import Action, StepContext, Verdict
from critic_guard_langgraph.messages import is_guard_note
from critic_guard_langgraph.shadow import READ_ONLY
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

TASK = "Compute ((2 + 3) * 4 + 1) * 2 with the tools."
PLAN: tuple[tuple[str, int], ...] = (("add", 3), ("multiply", 4), ("add", 1), ("multiply", 2))
START = 2
RIGHT = "42"

GuardFactory = Callable[..., CriticGuard]
"""The ``make_guard`` fixture's type: ``make_guard(critic, **config) -> CriticGuard``."""


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


TOOLS = [add, multiply]
SHADOW_TOOLS = {"add": READ_ONLY, "multiply": READ_ONLY}
"""Pilots: both tools are pure, so shadow branches may run them (``CriticGuardMiddleware(shadow_tools=...)``)."""


def wrong_answer(bad_step: int) -> str:
    x = START
    for i, (op, b) in enumerate(PLAN):
        b = b + 1 if i == bad_step else b
        x = x + b if op == "add" else x * b
    return str(x)


def steps_done(messages: Sequence[BaseMessage]) -> int:
    return sum(isinstance(m, AIMessage) and bool(m.tool_calls) for m in messages)


def calc_model(
    bad_step: int | None = None, *, final_suffix_after_note: str = ""
) -> tuple[ScriptedChatModel, list[list[BaseMessage]]]:
    """The scripted calculator agent and the list its inputs are recorded in.

    ``final_suffix_after_note``: appended to the final answer when a guard note follows the last answer.
    """
    calls: list[list[BaseMessage]] = []

    def policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        calls.append(list(messages))
        k = steps_done(messages)
        results = [m for m in messages if isinstance(m, ToolMessage)]
        x = int(results[-1].text) if results else START
        if k < len(PLAN):
            op, b = PLAN[k]
            if k == bad_step and not any(is_guard_note(m) for m in messages):
                b += 1
            return tool_call(op, a=x, b=b)
        if final_suffix_after_note and is_guard_note(messages[-1]):
            return f"{x}{final_suffix_after_note}"
        return str(x)

    return ScriptedChatModel(policy=policy), calls


def oracle_critic(ctx: StepContext) -> Verdict:
    proposed = ctx.proposed
    calls = proposed.get("tool_calls") or []
    k = sum(1 for m in ctx.messages[:-1] if m["role"] == "assistant" and m.get("tool_calls"))
    if calls and k < len(PLAN) and calls[0]["arguments"]["b"] != PLAN[k][1]:
        return Verdict(0.9, rationale=f"step {k} uses the wrong operand")
    return Verdict(0.1)


def flags_unchecked_answers(ctx: StepContext) -> Verdict:
    final = not ctx.proposed.get("tool_calls")
    return Verdict(0.9 if final and "checked" not in ctx.proposed["content"] else 0.1)


def build_agent(model: ScriptedChatModel, middleware: Sequence[Any] = (), checkpointer: Any = None) -> Any:
    return create_agent(model, TOOLS, middleware=list(middleware), checkpointer=checkpointer)


def task_input(text: str = TASK, msg_id: str = "task") -> dict[str, Any]:
    return {"messages": [HumanMessage(text, id=msg_id)]}


def comparable(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Messages as dicts; tool messages without their id (``add_messages`` gives them random ones)."""
    return [m.model_dump(exclude={"id"}) if isinstance(m, ToolMessage) else m.model_dump() for m in messages]


def assert_tool_groups_adjacent(messages: Sequence[BaseMessage]) -> None:
    """Every assistant tool call is answered by the messages right after it, with nothing in between."""
    for i, m in enumerate(messages):
        if isinstance(m, AIMessage) and m.tool_calls:
            n = len(m.tool_calls)
            following = messages[i + 1 : i + 1 + n]
            assert all(isinstance(t, ToolMessage) for t in following), f"tool group at {i} broken: {following}"
            assert {t.tool_call_id for t in following} == {c["id"] for c in m.tool_calls}


def final_answer(messages: Sequence[BaseMessage]) -> str:
    last = messages[-1]
    assert isinstance(last, AIMessage) and not last.tool_calls
    return last.text


def thread(name: str = "t1") -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def only_run(guard: CriticGuard) -> RunRecord:
    """The guard's one run (the test ran one task)."""
    assert guard.store is not None
    [run] = guard.store.runs(guard.guard_key)
    return run


def summary(guard: CriticGuard) -> list[tuple[int, int, Action, str]]:
    """``(step, attempt, action, reason)`` of every step row of the guard's one run."""
    assert guard.store is not None
    return [(s.step, s.attempt, s.action, s.reason) for s in guard.store.steps_of(only_run(guard).run_id)]


def notes(messages: Sequence[BaseMessage]) -> list[int]:
    """The positions of the guard's notes in ``messages``."""
    return [i for i, m in enumerate(messages) if is_guard_note(m)]


def assert_rolled_back_at_step_2(guard: CriticGuard, messages: Sequence[BaseMessage]) -> int:
    """The checks of a ``bad_step=2`` run whose step 2 the oracle critic rolled back with feedback: the note sits
    after the last tool result before the retry, says what the policy's feedback says, keeps every tool group
    whole, and the step rows show the rollback and the retry. Returns the note's position."""
    [at] = notes(messages)
    assert isinstance(messages[at - 1], ToolMessage) and messages[at - 1].text == "20"
    next_step = messages[at + 1]
    assert isinstance(next_step, AIMessage) and next_step.tool_calls[0]["args"] == {"a": 20, "b": 1}
    expected = guard.policy.feedback_text(Verdict(0.9, rationale="step 2 uses the wrong operand"), step=2)
    assert messages[at].text == expected
    assert_tool_groups_adjacent(messages)
    assert summary(guard) == [
        (0, 0, Action.NONE, "below_tau"),
        (1, 0, Action.NONE, "below_tau"),
        (2, 0, Action.ROLLBACK, "flag"),
        (2, 1, Action.NONE, "below_tau"),
        (3, 0, Action.NONE, "below_tau"),
        (4, 0, Action.NONE, "below_tau"),
    ]
    return at
