"""The LangGraph side of a pilot (:mod:`critic_guard.pilot`): run each task on a guarded ``create_agent`` graph.

``LangGraphPilot(agent=..., judge=...)`` is a suite's ``adapter``: for a guard it builds a
:class:`~critic_guard_langgraph.CriticGuardMiddleware` (with the judge), asks the ``agent`` factory for the graph
(``agent(middleware, checkpointer) -> create_agent(model, tools, middleware=[*middleware, ...],
checkpointer=checkpointer)``), and runs one task per call of ``run_task``: ``ainvoke`` on a fresh
thread, then await the verdicts judged off the user's path and the shadow branches of that thread (only its own:
with several tasks running at once, awaiting every branch in flight would make the pilot move in convoys).

The runs' task metadata comes from the runtime context: the default context is ``task.metadata`` (a dict, which
``create_agent`` accepts when the agent declares no ``context_schema``); an agent with its own context schema
passes ``context=`` and must keep the metadata's keys in it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel

from critic_guard.guard import CriticGuard
from critic_guard.pilot import PilotTask
from critic_guard_langgraph.middleware import CriticGuardMiddleware
from critic_guard_langgraph.runner import Judge
from critic_guard_langgraph.shadow import ToolSafety

__all__ = ["AgentFactory", "LangGraphPilot", "SaverFactory", "default_input"]

AgentFactory = Callable[[Sequence[Any], BaseCheckpointSaver[Any]], Pregel[Any, Any, Any, Any]]
"""``agent(middleware, checkpointer) -> compiled graph``: put ``middleware`` in ``create_agent``'s list."""
SaverFactory = Callable[[], AbstractAsyncContextManager[BaseCheckpointSaver[Any]]]


def default_input(task: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's input for a task: its ``input`` text as the user message."""
    if "input" not in task:
        raise KeyError(f"task {task.get('task_id')!r} has no 'input'; give LangGraphPilot an input= function")
    return {"messages": [HumanMessage(str(task["input"]))]}


class _Adapter:
    """One pilot's adapter: the guarded graph and how to run a task on it."""

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        middleware: CriticGuardMiddleware[Any, Any],
        make_input: Callable[[Mapping[str, Any]], Any],
        make_context: Callable[[PilotTask], Any] | None,
        recursion_limit: int,
    ) -> None:
        self.graph = graph
        self.middleware = middleware
        self.make_input = make_input
        self.make_context = make_context
        self.recursion_limit = recursion_limit

    async def run_task(self, task: PilotTask) -> None:
        context = task.metadata if self.make_context is None else self.make_context(task)
        thread_id = f"pilot-{task.task_id}-{task.attempt_id}"
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}, "recursion_limit": self.recursion_limit}
        try:
            await self.graph.ainvoke(self.make_input(task.data), config, context=context)
        finally:
            await self.middleware.drain(thread_id)  # its verdicts judged off the path, then its branches


class LangGraphPilot:
    """A suite's adapter factory for ``create_agent`` agents (see the module docstring).

    Args:
        agent: ``(middleware, checkpointer) -> compiled graph``.
        judge: ``(task, final_state) -> bool`` (sync or async): whether a run succeeded.
        input: task -> the graph's input (default: :func:`default_input`).
        context: task attempt -> the runtime context (default: ``task.metadata``).
        checkpointer: an async context manager factory yielding a saver (e.g. ``lambda:
            AsyncPostgresSaver.from_conn_string(url)``), or None for an in-memory saver. A saver with ``setup``
            is set up first.
        fork_context: the branch's own environment for tools declared ``forked``.
        shadow_tools: ``{tool name: ToolSafety}``, the tools a shadow branch may run (any other stops the branch and
            excludes its pair); see :class:`~critic_guard_langgraph.CriticGuardMiddleware`.
        recursion_limit: of each run (and its branch).
    """

    def __init__(
        self,
        *,
        agent: AgentFactory,
        judge: Judge,
        input: Callable[[Mapping[str, Any]], Any] = default_input,
        context: Callable[[PilotTask], Any] | None = None,
        checkpointer: SaverFactory | None = None,
        fork_context: Callable[[Any], Any] | None = None,
        shadow_tools: Mapping[str, ToolSafety] | None = None,
        recursion_limit: int = 50,
    ) -> None:
        self.agent = agent
        self.judge = judge
        self.input = input
        self.context = context
        self.checkpointer = checkpointer
        self.fork_context = fork_context
        self.shadow_tools = shadow_tools
        self.recursion_limit = recursion_limit

    @asynccontextmanager
    async def _saver(self) -> AsyncIterator[BaseCheckpointSaver[Any]]:
        if self.checkpointer is None:
            yield InMemorySaver()
            return
        async with self.checkpointer() as saver:
            setup = getattr(saver, "setup", None)
            done = setup() if setup is not None else None
            if inspect.isawaitable(done):
                await done
            yield saver

    @asynccontextmanager
    async def __call__(self, guard: CriticGuard) -> AsyncIterator[_Adapter]:
        async with self._saver() as saver:
            middleware = CriticGuardMiddleware(
                guard, judge=self.judge, fork_context=self.fork_context, shadow_tools=self.shadow_tools
            )
            graph = self.agent([middleware], saver)
            try:
                yield _Adapter(graph, middleware, self.input, self.context, self.recursion_limit)
            finally:
                await middleware.aclose()  # the guard is the pilot's: this finishes verdicts and branches only
