"""A guarded ``create_agent`` graph that acts in a forkable environment through tool calls.

Why the environment lives in LangGraph's runtime context, not in the graph or the tools: a pilot forks a shadow branch
at the critic's first flag, and the branch must act in its *own* copy of the world (docs/pilot-design.md, "Why fork at
the first flag"). The middleware's ``fork_context`` hook gives the branch ``context.fork()``, a new :class:`EnvContext`
around ``env.fork()``; every tool here is declared ``FORKED`` and steps whichever environment the run's context holds.
So one compiled graph serves the production run and its branches, and a branch can never step the production env.

The pieces:

* :class:`EnvContext`: the environment of one run, with its task metadata (the mapping view the guard records as the
  run's task) and the counters the benchmark reports (model calls, environment steps).
* :func:`env_tools`: one LangChain tool per :class:`~benchmarks.envs.base.ToolSpec`, calling ``env.step``.
* :class:`EnvTurns`: the harness inside the graph. It drives BFCL's turns (an answer without tool calls ends the
  turn; ``env.next_turn()`` gives the next user request), enforces the step budget, and writes the official judge's
  outcome (``env.success()``) into the state when the task is over. Inside the graph because a shadow branch must
  play the remaining turns too, on its own env, and its outcome must come out of its own final state.
* :func:`judge`: the pilot's judge, reading that outcome.
* :func:`build_env_agent`: the graph, with the guard's middleware (pilot: its runner above).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, NotRequired, cast

from langchain.agents import create_agent
from langchain.agents.middleware.types import AgentMiddleware, AgentState, OmitFromInput, hook_config
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.runtime import Runtime, get_runtime
from typing_extensions import override

from benchmarks.envs.base import Environment, ToolSpec
from critic_guard.guard import CriticGuard
from critic_guard.types import Arm
from critic_guard_langgraph import FORKED, CriticGuardMiddleware

OUTCOME = "env_success"
"""The state key :class:`EnvTurns` writes the judge's outcome to when the task is over."""


class EnvContext(Mapping[str, Any]):
    """The runtime context of one run: the environment it acts in, its task seed, its step budget, its counters.

    As a mapping it is the run's task metadata, ``{"task_id", "seed"}``, which the guard stores with the run (the
    environment itself is not JSON and never enters a checkpoint). :meth:`fork` makes a branch's context around
    ``env.fork()`` and remembers it, so :attr:`total_model_calls` covers a task's production run and its branches.
    """

    def __init__(self, env: Environment, *, seed: int, max_steps: int) -> None:
        self.env = env
        self.seed = seed
        self.max_steps = max_steps
        self.model_calls = 0
        self.steps = 0
        self.branches: list[EnvContext] = []

    def fork(self) -> EnvContext:
        branch = EnvContext(self.env.fork(), seed=self.seed, max_steps=self.max_steps)
        self.branches.append(branch)
        return branch

    def step(self, tool_name: str, args: Mapping[str, Any]) -> str:
        self.steps += 1
        return self.env.step(tool_name, args)

    @property
    def total_model_calls(self) -> int:
        """Model calls of this run and of every branch forked from it."""
        return self.model_calls + sum(branch.total_model_calls for branch in self.branches)

    def close(self) -> None:
        """Close this environment and every branch's."""
        for branch in self.branches:
            branch.close()
        self.env.close()

    def _view(self) -> dict[str, Any]:
        return {"task_id": self.env.task_id, "seed": self.seed}

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())


def current_context() -> EnvContext:
    """The :class:`EnvContext` of the run being executed (call from inside the graph: model, tools, critic)."""
    context: object = get_runtime().context
    if not isinstance(context, EnvContext):
        raise TypeError(f"the agent runs with an EnvContext as its runtime context, got {type(context).__name__}")
    return context


def env_tools(specs: Sequence[ToolSpec]) -> list[BaseTool]:
    """One tool per spec; each steps the environment of the run's context (``EnvContext.step``)."""
    return [
        StructuredTool(
            name=spec.name,
            description=spec.description,
            args_schema=dict(spec.parameters),
            func=_stepper(spec.name),
        )
        for spec in specs
    ]


def _stepper(tool_name: str) -> Callable[..., str]:
    def step(**args: Any) -> str:
        return current_context().step(tool_name, args)

    return step


class EnvTurnsState(AgentState[Any]):
    """:class:`EnvTurns`' state: the judge's outcome once the task is over (in the output, not in the input)."""

    env_success: NotRequired[Annotated[bool, OmitFromInput]]


class EnvTurns(AgentMiddleware[EnvTurnsState, Any, Any]):
    """The task harness inside the graph: turns, the step budget, and the outcome (see the module docstring).

    The guard judges inside the model node, so a final answer reaches :meth:`after_model` only once the guard has
    let it stand (a rolled-back answer never ends a turn).
    """

    state_schema = EnvTurnsState

    @hook_config(can_jump_to=["end"])
    @override
    def before_model(self, state: EnvTurnsState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Stop a run that has used its step budget: the judge rules on the world as it is."""
        context: EnvContext = runtime.context
        steps = sum(isinstance(message, ToolMessage) for message in state["messages"])
        if steps < context.max_steps:
            return None
        return {OUTCOME: context.env.success(), "jump_to": "end"}

    @hook_config(can_jump_to=["model"])
    @override
    def after_model(self, state: EnvTurnsState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """An answer without tool calls ends the turn: send the next request, or record the outcome."""
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or last.tool_calls:
            return None
        env = cast("EnvContext", runtime.context).env
        request = env.next_turn()
        if request is None:
            return {OUTCOME: env.success()}
        return {"messages": [HumanMessage(request)], "jump_to": "model"}


def judge(task: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """The pilot's judge: the outcome :class:`EnvTurns` recorded from ``env.success()`` (the official checker)."""
    if OUTCOME not in state:
        raise ValueError(f"task {task.get('task_id')!r}: the run ended before its task did (no {OUTCOME!r})")
    return bool(state[OUTCOME])


def build_env_agent(
    model: BaseChatModel,
    tools: Sequence[ToolSpec],
    guard: CriticGuard,
    checkpointer: BaseCheckpointSaver[Any],
    *,
    arm: Arm | None = None,
    fork_context: Callable[[EnvContext], EnvContext] = EnvContext.fork,
) -> tuple[Any, CriticGuardMiddleware[Any, Any]]:
    """The guarded agent for an environment's tools, and its guard middleware (whose ``runner`` runs branches).

    Every tool is declared ``FORKED`` in the middleware's ``shadow_tools``: a branch runs it against its own forked
    context.
    """
    middleware = CriticGuardMiddleware(
        guard,
        arm=arm,
        judge=judge,
        fork_context=fork_context,
        shadow_tools=dict.fromkeys((spec.name for spec in tools), FORKED),
    )
    stack: list[AgentMiddleware[Any, Any, Any]] = [EnvTurns(), middleware]
    agent = create_agent(model, env_tools(tools), middleware=stack, checkpointer=checkpointer)
    return agent, middleware
