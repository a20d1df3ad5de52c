"""Quickstart: a critic guards a create_agent agent. Offline: a scripted model stands in for the LLM."""

from langchain.agents import create_agent
from langchain_core.tools import tool

from critic_guard_langgraph import CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def llm(messages, rng):  # adds 1, 2, 3, 4 one call at a time; slips at step 2 unless a reviewer spoke up
    results = [m for m in messages if m.type == "tool"]
    total, step = (int(results[-1].content) if results else 0), len(results)
    if step == 4:
        return f"The sum is {total}."
    return tool_call("add", a=total, b=step + 1 + (10 if step == 2 and not is_guard_note(messages[-1]) else 0))


def critic(ctx):  # p_fail: high when the proposed addend is not the next integer
    args = (ctx.proposed.get("tool_calls") or [{"arguments": {"b": ctx.step + 1}}])[0]["arguments"]
    return (0.9, f"step {ctx.step} should add {ctx.step + 1}") if args["b"] != ctx.step + 1 else 0.1


middleware = CriticGuardMiddleware(critic, agent_name="quickstart", mode="on", tau=0.6, action="rollback")
agent = create_agent(ScriptedChatModel(policy=llm), [add], middleware=[middleware])
result = agent.invoke({"messages": [{"role": "user", "content": "Add 1 + 2 + 3 + 4 with the tool."}]})
print(result["messages"][-1].content)
guard = middleware.guard  # the store (SQLite, ./critic_guard.db by default), the counters, the lifecycle
run = guard.store.runs(guard.guard_key)[-1]  # the latest run (the store keeps them all)
for s in guard.store.steps_of(run.run_id):
    print(f"step {s.step} attempt {s.attempt}: p_fail={s.p_fail:.2f} -> {s.action.value}")
middleware.close()  # at shutdown: finishes the writes in flight
