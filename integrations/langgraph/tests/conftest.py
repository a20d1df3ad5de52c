"""Fixtures of the LangGraph integration tests: guards with a SQLite store, and the checkpointers to run under."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from calc_agent import GuardFactory
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from critic_guard.guard import CriticGuard


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
