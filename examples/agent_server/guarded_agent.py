"""A guarded ``create_agent`` graph for LangGraph's Agent Server. Offline: a scripted model stands in for the LLM.

    cd examples/agent_server && langgraph dev --no-browser         # pip install "langgraph-cli[inmem]"
    CRITIC_GUARD_MODE=pilot CRITIC_GUARD_STORE=sqlite:///pilot.db langgraph dev --no-browser

The module exposes two graphs (``langgraph.json``): ``agent``, guarded by one ``CriticGuardMiddleware``, and
``unguarded``, the same agent without it, so a client can check that the guard changes nothing it serves in modes
``observe`` and ``pilot`` (and ``auto`` until intervention is proven to help). Neither is compiled with a
checkpointer: the server gives every run its own (the middleware forks shadow branches through it). Settings come
from the environment: ``CRITIC_GUARD_MODE`` (default ``observe``) and ``CRITIC_GUARD_STORE`` (default
``sqlite:///critic_guard.db``; ``postgresql://...`` to share one store between server replicas).

The agent adds 1, 2, 3 and 4 with a tool, one call at a time; in a request whose text ends in an even number it
slips at step 2 (adds 12 instead of 3) unless a reviewer's note is in its input. The critic catches the slip; the
judge checks the final answer.
"""

from __future__ import annotations

import os
import re

from langchain.agents import create_agent
from langchain_core.tools import tool

from critic_guard_langgraph import READ_ONLY, CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

RIGHT = "The sum is 10."


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def llm(messages, rng):
    results = [m for m in messages if m.type == "tool"]
    total, step = (int(results[-1].content) if results else 0), len(results)
    if step == 4:
        return f"The sum is {total}."
    request = next(m.text for m in messages if m.type == "human" and not is_guard_note(m))
    slips = step == 2 and int(re.findall(r"\d+", request)[-1]) % 2 == 0 and not is_guard_note(messages[-1])
    return tool_call("add", a=total, b=step + 1 + (10 if slips else 0))


def critic(ctx):
    calls = ctx.proposed.get("tool_calls") or []
    if calls and calls[0]["arguments"]["b"] != ctx.step + 1:
        return 0.9, f"step {ctx.step} should add {ctx.step + 1}"
    return 0.1


def judge(task, final_state):
    return final_state["messages"][-1].text == RIGHT


guard = CriticGuardMiddleware(
    critic,
    agent_name="server-adder",
    mode=os.environ.get("CRITIC_GUARD_MODE", "observe"),
    store=os.environ.get("CRITIC_GUARD_STORE", "sqlite:///critic_guard.db"),
    min_step=1,
    judge=judge,
    shadow_tools={"add": READ_ONLY},  # shadow branches may run `add`: it has no side effects
)
agent = create_agent(ScriptedChatModel(policy=llm), [add], middleware=[guard], name="guarded")
unguarded = create_agent(ScriptedChatModel(policy=llm), [add], name="unguarded")
