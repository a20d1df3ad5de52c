"""clone_checkpoint / aclone_checkpoint on a real create_agent graph, on InMemorySaver and (Async)SqliteSaver."""

from __future__ import annotations

from typing import Any

import pytest
from calc_agent import RIGHT, build_agent, calc_model, comparable, final_answer, task_input, thread
from langchain.agents.middleware.types import AgentMiddleware, AgentState
from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from critic_guard_langgraph.fork import ForkError, aclone_checkpoint, check_durability, clone_checkpoint


class ForkPoints(AgentMiddleware[AgentState[Any], Any, Any]):
    """Records, at every after_model, the checkpoint the hook runs from (the fork point) and its task id."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[str, str, str]] = []  # (thread_id, checkpoint_id, task_id)

    def after_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> None:
        info = runtime.execution_info
        assert info is not None and info.thread_id is not None
        self.points.append((info.thread_id, info.checkpoint_id, info.task_id))

    async def aafter_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> None:
        self.after_model(state, runtime)


def at(thread_id: str, checkpoint_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}


def run_with_points(saver: Any) -> tuple[Any, ForkPoints]:
    model, _ = calc_model()
    points = ForkPoints()
    agent = build_agent(model, [points], saver)
    out = agent.invoke(task_input(), thread("prod"))
    assert final_answer(out["messages"]) == RIGHT
    assert len(points.points) == 5  # four tool steps and the final answer
    return agent, points


def test_clone_reproduces_the_fork_state_and_leaves_the_source_alone(saver: Any) -> None:
    agent, points = run_with_points(saver)
    head_before = agent.get_state(thread("prod"))
    history_before = [s.config["configurable"]["checkpoint_id"] for s in agent.get_state_history(thread("prod"))]
    _, checkpoint_id, task_id = points.points[2]

    new_config = clone_checkpoint(saver, at("prod", checkpoint_id), "branch", skip_task_ids={task_id})

    source = agent.get_state(at("prod", checkpoint_id))
    clone = agent.get_state(thread("branch"))
    assert new_config["configurable"]["thread_id"] == "branch"
    assert comparable(clone.values["messages"]) == comparable(source.values["messages"])
    assert isinstance(clone.values["messages"][-1], AIMessage)
    assert clone.next == source.next == ("ForkPoints.after_model",)
    after = agent.get_state(thread("prod"))
    assert after.config == head_before.config  # the production head did not move
    assert [s.config["configurable"]["checkpoint_id"] for s in agent.get_state_history(thread("prod"))] == (
        history_before
    )

    out = agent.invoke(None, thread("branch"))  # the branch resumes at the hook and runs to the end
    assert final_answer(out["messages"]) == RIGHT
    assert len(points.points) == 5 + 3  # the branch ran after_model again for steps 2, 3, 4
    assert points.points[5][0] == "branch"
    assert comparable(out["messages"]) == comparable(agent.get_state(thread("prod")).values["messages"])


def test_copied_pending_writes_are_not_run_again(saver: Any) -> None:
    """Without skipping, the hook's own finished writes are copied and the branch does not run it again."""
    agent, points = run_with_points(saver)
    _, checkpoint_id, _ = points.points[2]
    clone_checkpoint(saver, at("prod", checkpoint_id), "branch")
    [task] = agent.get_state(thread("branch")).tasks
    assert (task.name, task.result) == ("ForkPoints.after_model", {})  # done: its result and routing were copied
    out = agent.invoke(None, thread("branch"))
    assert final_answer(out["messages"]) == RIGHT
    assert len(points.points) == 5 + 2  # steps 3 and 4 only


async def test_aclone_reproduces_the_fork_state(asaver: Any) -> None:
    model, _ = calc_model()
    points = ForkPoints()
    agent = build_agent(model, [points], asaver)
    await agent.ainvoke(task_input(), thread("prod"))
    head_before = await agent.aget_state(thread("prod"))
    _, checkpoint_id, task_id = points.points[1]

    await aclone_checkpoint(asaver, at("prod", checkpoint_id), "branch", skip_task_ids=[task_id])

    source = await agent.aget_state(at("prod", checkpoint_id))
    clone = await agent.aget_state(thread("branch"))
    assert comparable(clone.values["messages"]) == comparable(source.values["messages"])
    assert (await agent.aget_state(thread("prod"))).config == head_before.config
    out = await agent.ainvoke(None, thread("branch"))
    assert final_answer(out["messages"]) == RIGHT
    assert [p[0] for p in points.points[5:]] == ["branch"] * 4


def test_missing_checkpoint_times_out_with_a_clear_error(saver: Any) -> None:
    with pytest.raises(ForkError, match=r"'nope' of thread 'prod' was not found within 0\.05 s"):
        clone_checkpoint(saver, at("prod", "nope"), "branch", wait_s=0.05)


async def test_amissing_checkpoint_times_out(asaver: Any) -> None:
    with pytest.raises(ForkError, match=r"not found within 0\.02 s"):
        await aclone_checkpoint(asaver, at("prod", "nope"), "branch", wait_s=0.02)


@pytest.mark.parametrize(
    ("config", "new", "message"),
    [
        ({"configurable": {"thread_id": "prod"}}, "b", "must name the checkpoint"),
        ({"configurable": {"thread_id": "prod", "checkpoint_id": "c", "checkpoint_ns": "sub"}}, "b", "subgraph"),
        ({"configurable": {"thread_id": "prod", "checkpoint_id": "c"}}, "prod", "new thread id"),
    ],
)
def test_bad_configs_are_refused(config: Any, new: str, message: str) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    with pytest.raises(ForkError, match=message):
        clone_checkpoint(InMemorySaver(), config, new)


def test_exit_durability_is_refused() -> None:
    check_durability({"configurable": {"__pregel_durability": "async"}})
    check_durability(None)
    with pytest.raises(ForkError, match='durability="exit"'):
        check_durability({"configurable": {"__pregel_durability": "exit"}})
