"""Pilot suites for the runner tests: the calculator agent of ``calc_agent`` with four kinds of task.

The task text names its kind and a step (``[kind=slip step=2]``); the scripted model and the critic read it, so
every run is a pure function of its input and a rerun (after a crash) reproduces the run exactly:

* ``clean``: the model is right; the critic never flags (one run, concordant success, cell n11);
* ``slip``: the model gets step ``step`` wrong unless a guard note is in its input; the critic flags the wrong
  step, so the treatment branch recovers (n01);
* ``fragile``: the model is right, the critic flags step ``step`` anyway, and after the note the model gets that
  step wrong (a disruption, n10);
* ``hopeless``: wrong at ``step`` whatever the note says (both fail, n00).

``gated_suite`` is for the crash test, run by ``critic-guard pilot`` in a subprocess: the judge of tasks 4 and 5
writes ``<gate>.waiting-<task_id>`` and waits until the file ``$CG_PILOT_GATE`` exists, so the pilot is held with
those two tasks mid-way (their pairs open) until the test kills it.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from calc_agent import PLAN, RIGHT, SHADOW_TOOLS, START, TASK, TOOLS, steps_done
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from critic_guard.pilot import PilotSuite
from critic_guard.policy import Policy
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph.messages import is_guard_note
from critic_guard_langgraph.pilot import LangGraphPilot, SaverFactory
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

KINDS = ("clean", "slip", "fragile", "hopeless")
CELL = {"clean": "n11", "slip": "n01", "fragile": "n10", "hopeless": "n00"}
GATED = ("t04", "t05")
_MARK = re.compile(r"\[kind=(\w+) step=(\d+)\]")


def task(i: int, kind: str, step: int = 2) -> dict[str, Any]:
    return {"task_id": f"t{i:02d}", "input": f"{TASK} [kind={kind} step={step}]"}


def _kind(text: str) -> tuple[str, int]:
    found = _MARK.search(text)
    assert found is not None, f"no [kind=... step=...] in {text!r}"
    return found.group(1), int(found.group(2))


def _task_text(messages: Sequence[BaseMessage]) -> str:
    return next(m.text for m in messages if isinstance(m, HumanMessage) and not is_guard_note(m))


def make_model(calls: list[int] | None = None) -> ScriptedChatModel:
    """The scripted model; ``calls`` (if given) gets one entry per model call."""

    def policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        if calls is not None:
            calls.append(1)
        kind, bad = _kind(_task_text(messages))
        k = steps_done(messages)
        results = [m for m in messages if isinstance(m, ToolMessage)]
        x = int(results[-1].text) if results else START
        if k >= len(PLAN):
            return str(x)
        op, b = PLAN[k]
        noted = any(is_guard_note(m) for m in messages)
        wrong = k == bad and ((kind == "slip" and not noted) or kind == "hopeless" or (kind == "fragile" and noted))
        return tool_call(op, a=x, b=b + 1 if wrong else b)

    return ScriptedChatModel(policy=policy)


def critic(ctx: StepContext) -> Verdict:
    """Flags a wrong operand (as an oracle would) and, on fragile tasks, the right step ``step`` (a false alarm)."""
    kind, bad = _kind(str(ctx.task.get("input", "")))
    calls = ctx.proposed.get("tool_calls") or []
    k = sum(1 for m in ctx.messages[:-1] if m["role"] == "assistant" and m.get("tool_calls"))
    if calls and k < len(PLAN) and calls[0]["arguments"]["b"] != PLAN[k][1]:
        return Verdict(0.9, rationale=f"step {k} uses the wrong operand")
    if kind == "fragile" and k == bad and calls:
        return Verdict(0.8, rationale="looks wrong (it is not)")
    return Verdict(0.1)


def judge(task: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    return bool(state["messages"][-1].text == RIGHT)


def build(middleware: Sequence[Any], checkpointer: Any, calls: list[int] | None = None) -> Any:
    return create_agent(make_model(calls), TOOLS, middleware=list(middleware), checkpointer=checkpointer)


def calc_suite(
    kinds: Sequence[str],
    *,
    name: str = "calc",
    calls: list[int] | None = None,
    checkpointer: SaverFactory | None = None,
    judge_fn: Any = judge,
    **guard_options: Any,
) -> PilotSuite:
    adapter = LangGraphPilot(
        agent=lambda middleware, saver: build(middleware, saver, calls),
        judge=judge_fn,
        checkpointer=checkpointer,
        shadow_tools=SHADOW_TOOLS,
    )
    tasks = [task(i, kind) for i, kind in enumerate(kinds)]
    return PilotSuite(
        name, tasks, critic, adapter, policy=Policy(min_step=0), guard_options={"lifecycle_ttl_s": 0.0, **guard_options}
    )


MIXED = ("clean", "slip", "fragile", "clean", "slip", "hopeless", "clean", "slip")


def mixed_suite() -> PilotSuite:
    """Eight tasks of every kind (the entry point for CLI tests)."""
    return calc_suite(MIXED)


def gated_suite() -> PilotSuite:
    """:data:`MIXED` with tasks 4 and 5 held at their judge until the gate file exists (see the module doc)."""
    gate = Path(os.environ["CG_PILOT_GATE"])

    async def gated_judge(task: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
        if task["task_id"] in GATED:
            gate.with_name(f"{gate.name}.waiting-{task['task_id']}").touch()
            while not gate.exists():
                await asyncio.sleep(0.02)
        return judge(task, state)

    return calc_suite(MIXED, judge_fn=gated_judge)
