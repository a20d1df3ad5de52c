"""Shadow branches: what a branch knows about itself, and which tools it may run (docs/pilot-design.md).

A shadow branch is a copy of the production run from its first flag on, running the other arm in a new thread.
Graph state is cloned (:mod:`critic_guard_langgraph.fork`); the *world* is not, so a branch must never execute a
tool with undeclared side effects: the user would get a second e-mail, a second payment. Each tool is declared
with a :class:`ToolSafety`:

* ``read_only``: runs for real (lookups, pure computations, idempotent reads);
* ``forked``: runs for real against the branch's own copy of the environment, which the branch receives as the
  graph's runtime context, produced by the runner's ``fork_context(context) -> context`` hook (a deepcopy of an
  in-memory env, a DB savepoint, a sandbox);
* ``emulate``: never runs; ``emulate(args) -> str`` gives the tool message the branch sees.

Any other tool stops the branch *before* it runs (deny by default, :class:`ShadowTools`): the stop is recorded in
the branch itself (:class:`BranchStop`, shared by every copy of the branch's config) and raised as
:class:`ShadowIncomplete`. The runner reads the record when the branch ends, so the pair is excluded as
``incomplete`` with the reason even if another middleware (a tool retry, a fallback) swallowed the exception and
the branch ran to its end; and every later tool or model call of a stopped branch raises again, so a branch that
was told to stop does no further work.

:class:`~critic_guard_langgraph.CriticGuardMiddleware` enforces the declarations itself (its ``shadow_tools=``
argument); :class:`ShadowToolGate` is the same gate as a separate middleware, for graphs whose branches a
:class:`~critic_guard_langgraph.runner.ShadowRunner` runs without the guard's middleware. A branch is recognised by its
config: ``config["configurable"]["critic_guard"]`` holds the :class:`ShadowBranch` (its run id, arm, fork step,
pair id and the fork's decision); :func:`is_shadow_branch` tells other middlewares and tools.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from langchain.agents.middleware.types import AgentMiddleware, AgentState, ContextT, ResponseT
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from typing_extensions import override

from critic_guard.types import Action, Arm

__all__ = [
    "BRANCH_KEY",
    "FORKED",
    "READ_ONLY",
    "BranchStop",
    "ShadowBranch",
    "ShadowIncomplete",
    "ShadowToolGate",
    "ShadowTools",
    "ToolSafety",
    "is_shadow_branch",
]

BRANCH_KEY: Final = "__critic_guard_branch"
"""The ``configurable`` key under which a shadow branch's config names the branch.

Dunder-prefixed because it is run-scoped and holds live objects (the proposal, the stop record): checkpointers copy
the other ``configurable`` keys into every checkpoint's metadata (the Agent Server's saver serializes all of them,
and a branch then fails: "Type is not msgpack serializable"), and skip keys that start with ``__``."""


class ShadowIncomplete(Exception):
    """A shadow branch stopped before running a tool it may not run; its pair is excluded as ``incomplete``."""

    def __init__(self, tool_name: str, reason: str = "undeclared side effects") -> None:
        super().__init__(f"shadow branch stopped before tool {tool_name!r}: {reason}")
        self.tool_name = tool_name
        self.reason = f"tool {tool_name!r}: {reason}"


@dataclass(frozen=True, slots=True)
class ToolSafety:
    """How a tool may run in a shadow branch: exactly one of ``read_only``, ``forked``, ``emulate``."""

    read_only: bool = False
    forked: bool = False
    emulate: Callable[[dict[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        chosen = [self.read_only, self.forked, self.emulate is not None]
        if sum(chosen) != 1:
            raise ValueError("ToolSafety needs exactly one of read_only=True, forked=True, emulate=callable")
        if self.emulate is not None and not callable(self.emulate):
            raise TypeError(f"emulate must be callable, got {type(self.emulate).__name__}")


READ_ONLY: Final = ToolSafety(read_only=True)
FORKED: Final = ToolSafety(forked=True)


class BranchStop:
    """Whether a shadow branch was stopped, and why: one mutable record per branch, shared by reference by every
    copy of the branch's config (LangGraph copies configs shallowly), so the runner sees a stop that no exception
    carried to it."""

    __slots__ = ("_lock", "error")

    def __init__(self) -> None:
        self.error: ShadowIncomplete | None = None
        self._lock = threading.Lock()  # parallel tool calls of one step run on threads

    def stop(self, error: ShadowIncomplete) -> bool:
        """Record the branch's stop (the first one wins); True if this call stopped it."""
        with self._lock:
            if self.error is not None:
                return False
            self.error = error
            return True

    def check(self) -> None:
        """Raise the recorded stop again: a stopped branch does no further work."""
        if self.error is not None:
            raise self.error

    def __copy__(self) -> BranchStop:
        return self  # one record per branch: a copied config must still report to the runner

    def __deepcopy__(self, memo: dict[int, Any]) -> BranchStop:
        return self


@dataclass(frozen=True, slots=True)
class ShadowBranch:
    """What a shadow branch knows about itself; it travels in the branch's config (in process: never persisted,
    since LangGraph copies only scalar ``configurable`` values into checkpoint metadata).

    ``proposal`` is the model response production was judging at the fork step (a ``ModelResponse``): the branch takes
    it instead of asking the model again, since a second sample would break the shared prefix (docs/pilot-design.md,
    "Why fork at the first flag"). ``action`` / ``feedback`` are what the branch's arm does with it, decided at the
    fork, so a treatment branch applies it without asking the critic again (a second, noisy verdict would break the same
    argument). ``p_fail`` / ``rationale`` / ``label`` are the fork's verdict, for the branch's records.
    ``context_forked`` says whether the branch runs on a forked runtime context. ``stop`` records a stop by the tool
    gate.
    """

    pair_id: str
    run_id: str
    arm: Arm
    fork_step: int
    action: Action = Action.NONE
    feedback: str | None = None
    p_fail: float | None = None
    rationale: str | None = None
    label: str | None = None
    context_forked: bool = False
    proposal: Any = None
    stop: BranchStop = field(default_factory=BranchStop, compare=False, repr=False)

    def to_config(self) -> dict[str, Any]:
        """The ``configurable`` entry (shallow: the proposal and the stop record are passed as is, not copied)."""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**raw, "arm": self.arm.value, "action": self.action.value}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ShadowBranch | None:
        """The branch named by a run's config, or None for a production run."""
        raw = ((config or {}).get("configurable") or {}).get(BRANCH_KEY)
        if raw is None:
            return None
        return cls(**{**raw, "arm": Arm(raw["arm"]), "action": Action(raw["action"])})


def is_shadow_branch(config_or_runtime: Any = None) -> bool:
    """Whether the current run is a critic-guard shadow branch, where side effects must not happen.

    For middlewares and tools with side effects of their own (a notification in ``after_agent``, a webhook, a
    write): skip them when this is True. Accepts a ``RunnableConfig`` dict, a ``ToolRuntime`` (or anything with a
    ``config``), a LangGraph ``Runtime`` (a hook's ``runtime``: it has no config, so the run's current config is
    read), or None (the current config; False outside a graph run).
    """
    config = config_or_runtime
    if config is not None and not isinstance(config, Mapping):
        config = getattr(config, "config", None)
    if config is None:
        try:
            config = get_config()
        except RuntimeError:  # outside a runnable context: not a graph run at all
            return False
    return ShadowBranch.from_config(config) is not None


class ShadowTools:
    """The tool declarations of shadow branches, and the gate that enforces them (deny by default).

    ``tools`` maps a tool name to its :class:`ToolSafety`. A tool declared ``forked`` runs only in a branch with a
    forked runtime context (the runner's ``fork_context``); without one it stops the branch like an undeclared one.
    ``on_stop()`` is called once per stopped branch (the guard counts them).
    """

    def __init__(
        self, tools: Mapping[str, ToolSafety] | None = None, *, on_stop: Callable[[], object] | None = None
    ) -> None:
        for name, safety in (tools or {}).items():
            if not isinstance(safety, ToolSafety):
                raise TypeError(f"shadow_tools[{name!r}] must be a ToolSafety, got {type(safety).__name__}")
        self.safety: dict[str, ToolSafety] = dict(tools or {})
        self.on_stop = on_stop

    def stoppers(self, names: Iterable[str], *, fork_context: bool) -> dict[str, str]:
        """Which of ``names`` would stop a branch, and why."""
        found = {}
        for name in names:
            safety = self.safety.get(name)
            if safety is None:
                found[name] = "undeclared"
            elif safety.forked and not fork_context:
                found[name] = "declared forked, but there is no fork_context"
        return found

    def gate(self, request: ToolCallRequest, branch: ShadowBranch) -> ToolMessage | None:
        """In ``branch``: None, run the tool for real; a message, the emulated result. Stops the branch (records
        the stop in it and raises :class:`ShadowIncomplete`) for any other tool, and for every call once stopped."""
        branch.stop.check()
        call = request.tool_call
        safety = self.safety.get(call["name"])
        if safety is None:
            raise self._stopped(branch, ShadowIncomplete(call["name"]))
        if safety.read_only:
            return None
        if safety.forked:
            if not branch.context_forked:
                raise self._stopped(
                    branch, ShadowIncomplete(call["name"], "declared forked, but the runner has no fork_context")
                )
            return None
        assert safety.emulate is not None
        return ToolMessage(content=str(safety.emulate(dict(call["args"]))), tool_call_id=call["id"], name=call["name"])

    def call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        """A ``wrap_tool_call`` body: production calls pass through; a branch's call is gated (:meth:`gate`)."""
        branch = branch_of(request)
        emulated = None if branch is None else self.gate(request, branch)
        return handler(request) if emulated is None else emulated

    async def acall(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async :meth:`call`."""
        branch = branch_of(request)
        emulated = None if branch is None else self.gate(request, branch)
        return await handler(request) if emulated is None else emulated

    def _stopped(self, branch: ShadowBranch, error: ShadowIncomplete) -> ShadowIncomplete:
        if branch.stop.stop(error) and self.on_stop is not None:
            self.on_stop()
        return error


def branch_of(request: ToolCallRequest) -> ShadowBranch | None:
    """The shadow branch a tool call runs in, or None in a production run."""
    return ShadowBranch.from_config(request.runtime.config if request.runtime is not None else None)


def tool_names(tools: Iterable[BaseTool | dict[str, Any]]) -> list[str]:
    """The names of the client-side tools of a model request (provider-side tools, given as dicts, never run in
    the agent's tool node, so there is nothing to gate)."""
    return [t.name for t in tools if isinstance(t, BaseTool)]


class ShadowToolGate(AgentMiddleware[AgentState[ResponseT], ContextT, ResponseT]):
    """The tool gate of shadow branches as a middleware of its own (see the module docstring).

    Not needed with :class:`~critic_guard_langgraph.CriticGuardMiddleware`, which gates tools itself (give it
    ``shadow_tools=``; declarations given only here are not seen by it). For branches run by a
    :class:`~critic_guard_langgraph.runner.ShadowRunner` on an agent without the guard's middleware:

    Example:
        ```python
        gate = ShadowToolGate({"search": READ_ONLY, "send_email": ToolSafety(emulate=lambda args: "sent")})
        agent = create_agent(model, tools, middleware=[fork_points, gate], checkpointer=saver)
        ```
    """

    def __init__(self, tools: Mapping[str, ToolSafety]) -> None:
        super().__init__()
        self.declared = ShadowTools(tools)

    @property
    def name(self) -> str:
        return "ShadowToolGate"

    @override
    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        return self.declared.call(request, handler)

    @override
    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        return await self.declared.acall(request, handler)
