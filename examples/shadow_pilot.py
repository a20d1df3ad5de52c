"""Shadow pilot: measure whether a critic's rollbacks help *your* agent before you let them act. Offline.

Users are served the unguarded (control) run; at a run's first flag the treatment arm (rollback with feedback)
continues in a shadow branch from that very step, and a judge scores both. The pilot ends with the decision.

    python examples/shadow_pilot.py                      # run it (kill it and rerun: it resumes)
    critic-guard pilot shadow_pilot:suite --tasks 20     # the same suite from the command line (in examples/)
"""

import asyncio

from langchain.agents import create_agent
from langchain_core.tools import tool
from rich.console import Console

from critic_guard.pilot import PilotSuite, run_pilot
from critic_guard.pilot_view import render_pilot
from critic_guard.policy import Policy
from critic_guard_langgraph import READ_ONLY, is_guard_note
from critic_guard_langgraph.pilot import LangGraphPilot
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def llm(messages, rng):  # adds 1, 2, 3, 4; rng is seeded by the messages, so every run is reproducible
    results = [m for m in messages if m.type == "tool"]
    total, step = (int(results[-1].content) if results else 0), len(results)
    if step == 4:
        return f"The sum is {total}."
    slip = rng.random() < (0.3 if is_guard_note(messages[-1]) else 0.15)  # a retry after a note slips 30%
    return tool_call("add", a=total, b=step + 1 + (10 if slip else 0))


def critic(ctx):  # catches every slip, and raises a false alarm on step 2 of every third task
    b = ctx.proposed["tool_calls"][0]["arguments"]["b"] if ctx.proposed.get("tool_calls") else ctx.step + 1
    if b != ctx.step + 1:
        return 0.9, f"step {ctx.step} should add {ctx.step + 1}"
    return 0.7 if ctx.step == 2 and int(ctx.task["task_id"].split("-")[1]) % 3 == 0 else 0.1


def judge(task, final_state):  # did the run end with the right answer?
    return final_state["messages"][-1].content == "The sum is 10."


def agent(middleware, checkpointer):  # your create_agent call, with the pilot's middleware in its list
    model = ScriptedChatModel(policy=llm)
    return create_agent(model, [add], middleware=list(middleware), checkpointer=checkpointer)


def suite():
    tasks = [{"task_id": f"sum-{i}", "input": f"Task sum-{i}: add 1, 2, 3 and 4 with the tool."} for i in range(60)]
    # shadow branches may run `add` for real (no side effects); any undeclared tool would stop the branch
    adapter = LangGraphPilot(agent=agent, judge=judge, shadow_tools={"add": READ_ONLY})
    return PilotSuite("shadow-example", tasks, critic, adapter, policy=Policy(min_step=1))


if __name__ == "__main__":
    pilot = suite()
    with pilot.guard(mode="pilot", store="sqlite:///critic_guard.db") as guard:
        result = asyncio.run(run_pilot(pilot, guard, concurrency=4))
    Console(width=100).print(render_pilot(result))
