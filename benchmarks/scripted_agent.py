"""The agent the latency and overhead benchmarks time: ``create_agent`` with a scripted model and a real tool.

Why one module: both benchmarks must compare the guard against the *same* agent, built the same way, so that a
change to the agent (steps, checkpointer, request) moves both measurements together. The model is
:class:`~critic_guard_langgraph.testing.ScriptedChatModel` (no network, real LangChain plumbing); the agent adds
1, 2, ..., ``steps`` with one ``add`` tool call per step, then answers: ``steps + 1`` model steps per run.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

__all__ = ["CHECKPOINTERS", "Counting", "add", "answer", "build_agent", "request"]

CHECKPOINTERS = ("none", "memory", "sqlite")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Counting:
    """The scripted policy: adds 1, 2, ..., ``steps`` with one tool call per step, then answers.

    ``calls`` counts the model calls it answered (thread-safe): the steps the agents really proposed, which the
    burst compares with the verdicts the guard recorded.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        with self._lock:
            self.calls += 1
        results = [m for m in messages if isinstance(m, ToolMessage)]
        total = int(results[-1].text) if results else 0
        return tool_call("add", a=total, b=len(results) + 1) if len(results) < self.steps else f"total {total}"


def answer(steps: int) -> str:
    """The final answer of a run with ``steps`` tool steps (checked after every timed run)."""
    return f"total {steps * (steps + 1) // 2}"


def request() -> dict[str, Any]:
    """The input of every run."""
    return {"messages": [HumanMessage("Add 1, 2, 3, ...")]}


def _checkpointer(kind: str, path: Path) -> Any:
    if kind == "none":
        return None
    if kind == "memory":
        return InMemorySaver()
    if kind == "sqlite":
        return SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    raise ValueError(f"checkpointer must be one of {CHECKPOINTERS}, got {kind!r}")


def build_agent(policy: Counting, middleware: Sequence[Any], *, checkpointer: str, path: Path) -> Any:
    """A compiled ``create_agent`` agent with the ``add`` tool, ``middleware`` and its own checkpointer.

    ``path`` is the SQLite checkpoint file (used only with ``checkpointer="sqlite"``).
    """
    model = ScriptedChatModel(policy=policy)
    return create_agent(model, [add], middleware=list(middleware), checkpointer=_checkpointer(checkpointer, path))
