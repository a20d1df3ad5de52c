"""A pilot on PostgreSQL end to end: the guard's store and LangGraph's ``AsyncPostgresSaver`` on a real server.

The forked arms of every flagged task must share the exact prefix: the shadow branch's thread holds the production
thread's messages up to the fork checkpoint (the input of the flagged step's model call; the branch decides about the
proposal itself), and the production thread continues from the same prefix (docs/pilot-design.md). The server is the
session's (``postgres_schema_url``, tests/pg_fixtures.py); without Debian's binaries the test skips locally and fails in
CI.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from calc_agent import comparable
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from pilot_suites import CELL, MIXED, calc_suite

from critic_guard.pilot import run_pilot
from critic_guard.store.base import PairStatus

pytestmark = pytest.mark.postgres


async def messages_at(url: str, thread_id: str, checkpoint_id: str | None = None) -> list[Any]:
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    if checkpoint_id is not None:
        config["configurable"]["checkpoint_id"] = checkpoint_id
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        found = await saver.aget_tuple(config)  # type: ignore[arg-type]
    assert found is not None, f"no checkpoint for {config}"
    messages: list[Any] = found.checkpoint["channel_values"]["messages"]
    return messages


def test_a_pilot_on_postgres_forks_arms_that_share_the_exact_prefix(postgres_schema_url: str) -> None:
    suite = calc_suite(MIXED, checkpointer=lambda: AsyncPostgresSaver.from_conn_string(postgres_schema_url))
    with suite.guard(mode="pilot", store=postgres_schema_url) as guard:
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
        prefix = asyncio.run(messages_at(postgres_schema_url, production, pair.fork_checkpoint_id))
        assert pair.fork_step == 2 and len(prefix) == 5  # the task and two tool steps: the flagged step's input
        served = asyncio.run(messages_at(postgres_schema_url, production))
        branch = asyncio.run(messages_at(postgres_schema_url, f"{production}~shadow~{branch_run}"))
        assert comparable(served[: len(prefix)]) == comparable(prefix) == comparable(branch[: len(prefix)])
        assert comparable(branch) != comparable(served)  # the branch intervened at the fork: the arms differ after it
