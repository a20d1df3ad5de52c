"""Production, mode "auto": the guard measures its own interventions and switches them off when they harm. Offline.

Users are served the unguarded (control) run while the guard is in its pilot state; at each run's first flag the
treatment arm runs in a shadow branch, and a judge scores both. Every completed pair updates a betting e-process in
the store; once harm is proven (wealth >= 2/alpha; the chance of any wrong proof, harm or benefit, is at most alpha)
the guard disables intervention for every replica sharing the store, and stops forking. Here the critic raises many
false alarms and a rollback often breaks a right step, so the guard should disable itself.

    python examples/production_auto.py        # run it twice: the second run starts where the first left off
"""

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from critic_guard_langgraph import READ_ONLY, CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def llm(messages, rng):  # adds 1, 2, 3, 4; slips at 5% of steps; after a guard note, half its answers go wrong
    results = [m for m in messages if m.type == "tool"]
    total, step = (int(results[-1].content) if results else 0), len(results)
    noted = any(is_guard_note(m) for m in messages)
    if step == 4:
        return f"The sum is {total + 1 if noted and rng.random() < 0.5 else total}."
    slip = not noted and rng.random() < 0.05
    return tool_call("add", a=total, b=step + 1 + (10 if slip else 0))


def critic(ctx):  # catches slips, but also raises a false alarm on step 2 of every run
    b = ctx.proposed["tool_calls"][0]["arguments"]["b"] if ctx.proposed.get("tool_calls") else ctx.step + 1
    if b != ctx.step + 1:
        return 0.9, f"step {ctx.step} should add {ctx.step + 1}"
    return 0.7 if ctx.step == 2 and not any(m["role"] == "user" for m in ctx.messages[1:]) else 0.1


def judge(task, final_state):
    return final_state["messages"][-1].content == "The sum is 10."


def main(requests: int = 150) -> None:
    middleware = CriticGuardMiddleware(
        critic,
        agent_name="adder",
        mode="auto",
        min_step=1,
        store="sqlite:///critic_guard_auto.db",
        judge=judge,
        shadow_tools={"add": READ_ONLY},  # shadow branches may run `add` (it has no side effects)
    )
    guard = middleware.guard  # the lifecycle, the counters, the store
    model = ScriptedChatModel(policy=llm)
    agent = create_agent(model, [add], middleware=[middleware], checkpointer=InMemorySaver())
    print(f"state at start: {guard.lifecycle().state.value} ({guard.lifecycle().monitor.t} pairs so far)")
    served = {"control": 0, "treatment": 0}
    for i in range(requests):
        served[guard.serve_arm().value] += 1
        thread = f"user-{guard.lifecycle().monitor.t}-{i}"  # a fresh conversation per request
        agent.invoke(
            {"messages": [HumanMessage(f"Request {i}: add 1, 2, 3 and 4.")]}, {"configurable": {"thread_id": thread}}
        )
        middleware.wait(30, thread_id=thread)  # a service would not wait; the example does, to be exact
    record = guard.lifecycle()
    for t in guard.transitions():
        print(
            f"transition: {t.from_state.value} -> {t.to_state.value} after {t.evidence.get('pairs')} pairs: {t.reason}"
        )
    counts = record.counts
    print(f"pairs: {record.monitor.t} (recoveries {counts.n01}, disruptions {counts.n10}); served: {served}")
    print(f"state at end: {record.state.value}; intervening now: {guard.acts(guard.serve_arm())}")
    middleware.close()


if __name__ == "__main__":
    main()
