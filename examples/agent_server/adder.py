"""The example's agent, shared by the deployment (``guarded_agent.py``) and the pilot suite (``pilot_suite.py``).

The agent adds 1, 2, 3 and 4 with a tool, one call at a time; in a request whose text ends in an even number it
slips at step 2 (adds 12 instead of 3) unless a reviewer's note is in its input. The critic catches the slip; the
judge checks the final answer. The model is scripted, so everything runs offline.
"""

from __future__ import annotations

import re

from langchain_core.tools import tool

from critic_guard.policy import Policy
from critic_guard_langgraph import READ_ONLY, is_guard_note
from critic_guard_langgraph.testing import tool_call

AGENT_NAME = "server-adder"
POLICY = Policy(min_step=1)  # the guard key is agent name, critic and policy: the deployment and the suite share it
SHADOW_TOOLS = {"add": READ_ONLY}  # shadow branches may run `add`: it has no side effects
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
