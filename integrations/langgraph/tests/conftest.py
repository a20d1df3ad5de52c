"""Fixtures of the LangGraph integration tests: guards with a SQLite store, and the checkpointers to run under."""

from __future__ import annotations

import inspect
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from calc_agent import GuardFactory
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from critic_guard.guard import CriticGuard


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Every blocking call made on an event loop with our code on the stack raises, as in LangChain's own suite and
    under ``langgraph dev`` (docs/faults.md, "No blocking call on the event loop"): an async test that would block the
    loop fails (directly, or through a counted store or telemetry error that the test's assertions see)."""
    with blockbuster_ctx(["critic_guard", "critic_guard_langgraph"]) as bb:
        helpers = _test_helpers()
        for function in bb.functions.values():
            # Set-up and tear-down, not a request path: a guard opens (and creates) its store when it is built and
            # closes it once, as a service does at start-up and shutdown (tests build guards inside async tests).
            function.can_block_in("critic_guard/guard.py", {"__init__", "close"})
            # The guard's own event loop thread runs only critics: a critic that blocks there holds no request (it
            # is what tests of blocking critics do; the guard measures it as the loop's lag).
            function.can_block_in("critic_guard/critic_loop.py", {"_run"})
            # The tests' own sync helpers (reading the store to check what the guard wrote, the scripted models,
            # tools and critics): theirs, not the guard's path.
            for path, names in helpers.items():
                function.can_block_in(path, names)
        yield bb


def _test_helpers() -> dict[str, set[str]]:
    """``{path: names}`` of the plain (sync) helper functions of this directory's test modules."""
    here = Path(__file__).parent
    helpers: dict[str, set[str]] = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file is None or Path(file).parent != here:
            continue
        names = {
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value)
            and value.__module__ == module.__name__
            and not inspect.iscoroutinefunction(value)
            and not name.startswith("test_")
        }
        helpers[f"tests/{Path(file).name}"] = names
    return helpers


@pytest.fixture
def make_guard(tmp_path: Path) -> Iterator[GuardFactory]:
    """``make_guard(critic, **config)``: a guard storing to a fresh SQLite file, closed after the test."""
    guards: list[CriticGuard] = []

    def make(critic: Any, **config: Any) -> CriticGuard:
        config.setdefault("store", f"sqlite:///{tmp_path / f'guard{len(guards)}.db'}")
        config.setdefault("agent_name", "calc")
        guard = CriticGuard(critic, **config)
        guards.append(guard)
        return guard

    yield make
    for guard in guards:
        guard.close()


def _sync_saver(kind: str, tmp_path: Path) -> Iterator[Any]:
    if kind == "none":
        yield None
    elif kind == "memory":
        yield InMemorySaver()
    else:
        conn = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
        yield SqliteSaver(conn)
        conn.close()


async def _async_saver(kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    if kind == "none":
        yield None
    elif kind == "memory":
        yield InMemorySaver()
    else:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as saver:
            yield saver


@pytest.fixture(params=["none", "memory", "sqlite"])
def checkpointer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """No checkpointer, LangGraph's in-memory saver, or ``SqliteSaver`` on a real file."""
    yield from _sync_saver(request.param, tmp_path)


@pytest.fixture(params=["none", "memory", "sqlite"])
async def acheckpointer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """The async counterparts: no checkpointer, the in-memory saver, or ``AsyncSqliteSaver`` on a file."""
    async for saver in _async_saver(request.param, tmp_path):
        yield saver


@pytest.fixture(params=["memory", "sqlite"])
def saver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A checkpointer for APIs that require one (sync)."""
    yield from _sync_saver(request.param, tmp_path)


@pytest.fixture(params=["memory", "sqlite"])
async def asaver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A checkpointer for APIs that require one (async)."""
    async for saver in _async_saver(request.param, tmp_path):
        yield saver
