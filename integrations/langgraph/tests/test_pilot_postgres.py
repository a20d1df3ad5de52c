"""A pilot on PostgreSQL end to end: the guard's store and LangGraph's ``AsyncPostgresSaver`` on a real server.

The forked arms of every flagged task must share the exact prefix: the shadow branch's thread holds the production
thread's messages up to the fork checkpoint (the input of the flagged step's model call; the branch decides about the
proposal itself), and the production thread continues from the same prefix (docs/pilot-design.md). The server is started
once for this module from Debian's binaries (tests/pg_server.py); without them the test skips locally and fails in CI.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from calc_agent import comparable
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from pilot_suites import CELL, MIXED, calc_suite
from psycopg import sql

from critic_guard.pilot import run_pilot
from critic_guard.store.base import PairStatus
from tests.pg_server import PostgresUnavailable, postgres_server
from tests.support import skip_or_fail

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        skip_or_fail(str(exc))


@pytest.fixture
def schema_url(server_url: str) -> Iterator[str]:
    """A fresh schema for the store's and the checkpointer's tables, dropped afterwards."""
    name = f"cg_pilot_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield f"{server_url}?options=-csearch_path%3D{name}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


async def messages_at(url: str, thread_id: str, checkpoint_id: str | None = None) -> list[Any]:
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    if checkpoint_id is not None:
        config["configurable"]["checkpoint_id"] = checkpoint_id
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        found = await saver.aget_tuple(config)  # type: ignore[arg-type]
    assert found is not None, f"no checkpoint for {config}"
    messages: list[Any] = found.checkpoint["channel_values"]["messages"]
    return messages


def test_a_pilot_on_postgres_forks_arms_that_share_the_exact_prefix(schema_url: str) -> None:
    suite = calc_suite(MIXED, checkpointer=lambda: AsyncPostgresSaver.from_conn_string(schema_url))
    with suite.guard(mode="pilot", store=schema_url) as guard:
        result = asyncio.run(run_pilot(suite, guard, concurrency=3))
        assert guard.store is not None
        rows = {row.task_id: row for row in guard.store.pilot_tasks(result.pilot_key)}
        pairs = guard.pairs()
    cells = dict.fromkeys(("n00", "n01", "n10", "n11"), 0)
    for kind in MIXED:
        cells[CELL[kind]] += 1
    assert result.to_dict()["pairs"] == cells
    flagged = [p for p in pairs if p.flagged]
    assert len(flagged) == 5 and all(p.status is PairStatus.COMPLETE for p in flagged)
    for pair in flagged:
        assert pair.task_id is not None and pair.fork_checkpoint_id is not None
        row = rows[pair.task_id]
        production = f"pilot-{pair.task_id}-{row.attempt_id}"
        branch_run = pair.treatment_run_id  # production serves control; the treatment arm ran in shadow
        prefix = asyncio.run(messages_at(schema_url, production, pair.fork_checkpoint_id))
        assert pair.fork_step == 2 and len(prefix) == 5  # the task and two tool steps: the flagged step's input
        served = asyncio.run(messages_at(schema_url, production))
        branch = asyncio.run(messages_at(schema_url, f"{production}~shadow~{branch_run}"))
        assert comparable(served[: len(prefix)]) == comparable(prefix) == comparable(branch[: len(prefix)])
        assert comparable(branch) != comparable(served)  # the branch intervened at the fork: the arms differ after it
