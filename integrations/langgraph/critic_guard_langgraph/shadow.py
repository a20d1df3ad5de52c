"""Shadow branches: what a branch knows about itself, and which tools it may run (DESIGN §3, pilot-design.md).

A shadow branch is a copy of the production run from its first flag on, running the other arm in a new thread.
Graph state is cloned (:mod:`critic_guard_langgraph.fork`); the *world* is not, so a branch must never execute a
tool with undeclared side effects: the user would get a second e-mail, a second payment. Each tool is declared
with a :class:`ToolSafety`:

* ``read_only``: runs for real (lookups, pure computations, idempotent reads);
* ``forked``: runs for real against the branch's own copy of the environment, which the branch receives as the
  graph's runtime context, produced by the runner's ``fork_context(context) -> context`` hook (a deepcopy of an
  in-memory env, a DB savepoint, a sandbox);
* ``emulate``: never runs; ``emulate(args) -> str`` gives the tool message the branch sees.

Any other tool stops the branch *before* it runs by raising :class:`ShadowIncomplete`; the runner marks the pair
``incomplete`` with the reason (excluded from the statistics, counted in the report).

:class:`ShadowToolGate` enforces this in ``wrap_tool_call``. It is a separate middleware so that agents not
running pilots do not pay LangChain's per-tool-call wrapper cost; outside a shadow branch it passes every call
through untouched. The branch is recognised by its config: ``config["configurable"]["critic_guard"]`` holds the
:class:`ShadowBranch` (its run id, arm, fork step, pair id and the fork's decision).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from langchain.agents.middleware.types import AgentMiddleware, AgentState, ContextT, ResponseT
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from typing_extensions import override

from critic_guard.types import Action, Arm

__all__ = ["BRANCH_KEY", "FORKED", "READ_ONLY", "ShadowBranch", "ShadowIncomplete", "ShadowToolGate", "ToolSafety"]

BRANCH_KEY: Final = "critic_guard"
"""The ``configurable`` key under which a shadow branch's config names the branch."""


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


@dataclass(frozen=True, slots=True)
class ShadowBranch:
    """What a shadow branch knows about itself; it travels in the branch's config (in process: never persisted,
    since LangGraph copies only scalar ``configurable`` values into checkpoint metadata).

    ``proposal`` is the model response production was judging at the fork step (a ``ModelResponse``): the branch
    takes it instead of asking the model again, since a second sample would break the shared-prefix argument of
    DESIGN §3. ``action`` / ``feedback`` are what the branch's arm does with it, decided at the fork, so a treatment
    branch applies it without asking the critic again (a second, noisy verdict would break the same argument).
    ``p_fail`` / ``rationale`` / ``label`` are the fork's verdict, for the branch's records. ``context_forked``
    says whether the branch runs on a forked runtime context.
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

    def to_config(self) -> dict[str, Any]:
        """The ``configurable`` entry (shallow: the proposal is passed as is, not copied)."""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**raw, "arm": self.arm.value, "action": self.action.value}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ShadowBranch | None:
        """The branch named by a run's config, or None for a production run."""
        raw = ((config or {}).get("configurable") or {}).get(BRANCH_KEY)
        if raw is None:
            return None
        return cls(**{**raw, "arm": Arm(raw["arm"]), "action": Action(raw["action"])})


class ShadowToolGate(AgentMiddleware[AgentState[ResponseT], ContextT, ResponseT]):
    """Lets a shadow branch run only the tools declared safe for it (see the module docstring).

    Example:
        ```python
        gate = ShadowToolGate({"search": READ_ONLY, "send_email": ToolSafety(emulate=lambda args: "sent")})
        agent = create_agent(model, tools, middleware=[CriticGuardMiddleware(guard), gate], checkpointer=saver)
        ```
    """

    def __init__(self, tools: Mapping[str, ToolSafety]) -> None:
        super().__init__()
        for name, safety in tools.items():
            if not isinstance(safety, ToolSafety):
                raise TypeError(f"tools[{name!r}] must be a ToolSafety, got {type(safety).__name__}")
        self.safety = dict(tools)

    @property
    def name(self) -> str:
        return "ShadowToolGate"

    def _gate(self, request: ToolCallRequest) -> ToolMessage | None:
        """None: run the tool for real; a message: the emulated result. Raises to stop the branch."""
        branch = ShadowBranch.from_config(request.runtime.config if request.runtime is not None else None)
        if branch is None:
            return None
        call = request.tool_call
        safety = self.safety.get(call["name"])
        if safety is None:
            raise ShadowIncomplete(call["name"])
        if safety.read_only:
            return None
        if safety.forked:
            if not branch.context_forked:
                raise ShadowIncomplete(call["name"], "declared forked, but the runner has no fork_context")
            return None
        assert safety.emulate is not None
        return ToolMessage(content=str(safety.emulate(dict(call["args"]))), tool_call_id=call["id"], name=call["name"])

    @override
    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        emulated = self._gate(request)
        return handler(request) if emulated is None else emulated

    @override
    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        emulated = self._gate(request)
        return await handler(request) if emulated is None else emulated
