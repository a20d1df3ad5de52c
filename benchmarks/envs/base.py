"""A framework-neutral task environment that an agent acts in through tool calls, and that can be forked.

Why a protocol of our own: the benchmarks run real environments (TextWorld, BFCL multi-turn) through a guarded agent,
and counterfactual pilots fork the *world* at the critic's first flag (docs/pilot-design.md, "Why fork at the first
flag"). Both need the same few operations from any environment: the tools it offers, a step, an independent copy in the
same state, the next correct action (to script an agent with injected mistakes), and the official judge. Nothing here
knows LangChain: tool specs are JSON-schema functions and actions are ``(name, args)`` pairs, the shape of
``Message.tool_calls``.

Turns. A task is a sequence of user requests (one for TextWorld, several for BFCL). The agent works on
``instruction`` with tool calls; when it answers without a tool call, the harness calls ``next_turn()``, which returns
the next user request (and updates ``instruction``) or ``None`` when the task is over.

Errors. ``step`` never raises for anything a model can do (unknown tool, bad arguments, acting after the game ended):
it returns an error observation, as a tool runtime would. It raises only for harness misuse, such as stepping after
``next_turn()`` returned ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool the environment offers: a name, a description and a JSON-schema object for its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"tool name must be an identifier, got {self.name!r}")
        if self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be a JSON-schema object, got {self.parameters!r}")

    def as_openai_tool(self) -> dict[str, Any]:
        """The OpenAI function-tool dict, which LangChain's ``bind_tools`` and most providers accept as is."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


class ToolCall(NamedTuple):
    """An action in an environment: a tool name and its keyword arguments (unpacks as ``name, args``)."""

    name: str
    args: dict[str, Any]


class TaskEnded(RuntimeError):
    """Raised when the harness steps an environment whose task is over (``next_turn()`` returned ``None``)."""


@runtime_checkable
class Environment(Protocol):
    """What the benchmarks need from a task environment (see the module docstring for turns and errors)."""

    @property
    def task_id(self) -> str:
        """Stable identifier of the task (game file stem, BFCL entry id)."""
        ...

    @property
    def instruction(self) -> str:
        """The user request of the current turn."""
        ...

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        """The tools offered in the current turn."""
        ...

    @property
    def turn(self) -> int:
        """0-based index of the current turn."""
        ...

    @property
    def n_turns(self) -> int:
        """How many user requests the task has."""
        ...

    @property
    def done(self) -> bool:
        """True once no further action can change the outcome (game won or lost, or all turns ended)."""
        ...

    def step(self, tool_name: str, args: Mapping[str, Any]) -> str:
        """Run one tool call and return its observation."""
        ...

    def next_turn(self) -> str | None:
        """End the current turn; return the next user request, or ``None`` when the task is over."""
        ...

    def fork(self) -> Self:
        """An independent copy in the same state: acting in either never changes the other."""
        ...

    def oracle_next(self) -> ToolCall | None:
        """The next correct action from the current state, or ``None`` when the correct move is to end the turn."""
        ...

    def success(self) -> bool:
        """The official judge on what happened so far (turns not reached count as turns without actions)."""
        ...

    def close(self) -> None:
        """Release resources (idempotent)."""
        ...
