"""A PostgreSQL outage mid-pilot (docs/faults.md): the server is stopped for 1, 3 or 6 s, then started again.

The seeded calculator suite (``pilot_suites``: every task's run is a pure function of its input, so an undisturbed
pilot gives exactly ``CELL[kind]`` per task) runs on a real server started for this module (tests/pg_server.py).
When the production run of task ``t06`` is judged, a thread stops the server (fast mode: every pooled connection
dies) and starts it again after the outage. Tasks keep running meanwhile: the guard's writes wait in its queue,
the pilot's bookkeeping retries. Afterwards every task's pair must hold the undisturbed cell, or be shown as
excluded with a reason; nothing is open, nothing lost, and no store error escapes the pilot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pilot_suites import CELL, KINDS, calc_suite, judge

from critic_guard.pilot import run_pilot
from critic_guard.report.status import status_rows
from critic_guard.store.base import PairStatus
from tests.pg_fixtures import fresh_schema
from tests.pg_server import PostgresCluster, PostgresUnavailable, postgres_cluster
from tests.support import serve_or_skip

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SUITE = tuple(KINDS[i % len(KINDS)] for i in range(24))
TRIGGER = "t06"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A server of this module's own: the test stops and starts it (the session's server must stay up)."""
    yield from serve_or_skip(postgres_cluster(), PostgresUnavailable)


@pytest.fixture
def schema_url(cluster: PostgresCluster) -> Iterator[str]:
    with fresh_schema(cluster.url, "cg_outage") as url:
        yield url


class Outage:
    """Stops the server when ``TRIGGER``'s production run is judged, and starts it ``seconds`` later.

    The judge returns only once the server is down, so ``TRIGGER``'s own outcome and run end meet the outage
    however the machine schedules the stopping thread (the outage's length is the test's parameter, not a bound)."""

    def __init__(self, cluster: PostgresCluster, seconds: float) -> None:
        self.cluster, self.seconds = cluster, seconds
        self.thread: threading.Thread | None = None
        self.down = threading.Event()

    def _run(self) -> None:
        try:
            self.cluster.stop()
        finally:
            self.down.set()
        time.sleep(self.seconds)
        self.cluster.start()

    def judge(self, task: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
        if task["task_id"] == TRIGGER and self.thread is None:
            self.thread = threading.Thread(target=self._run)
            self.thread.start()
            self.down.wait()
        return judge(task, state)


@pytest.mark.parametrize("outage_s", [1, 3, 6])
def test_a_postgres_outage_mid_pilot_changes_no_cell_and_loses_no_pair(
    outage_s: float, cluster: PostgresCluster, schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    outage = Outage(cluster, outage_s)
    suite = calc_suite(SUITE, name="outage", judge_fn=outage.judge)
    with caplog.at_level(logging.WARNING), suite.guard(mode="pilot", store=schema_url) as guard:
        result = asyncio.run(run_pilot(suite, guard, concurrency=3))  # no store error escapes
        assert outage.thread is not None
        outage.thread.join()
        assert guard.store is not None
        rows = {row.task_id: row for row in guard.store.pilot_tasks(result.pilot_key)}
        pairs = {p.pair_id: p for p in guard.pairs()}
        [status] = status_rows(guard.store)
        counters = guard.counters
    assert counters.store_deferred > 0  # the outage did reach the guard's writes
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    assert tracebacks == []  # the outage is logged as one-line warnings, never as a PoolTimeout traceback

    expected = dict.fromkeys(("n00", "n01", "n10", "n11"), 0)
    excluded: dict[str, str] = {}
    for i, kind in enumerate(SUITE):
        row = rows[f"t{i:02d}"]
        assert row.run_id is not None
        pair = pairs[row.run_id]
        if pair.status is PairStatus.INCOMPLETE:  # allowed, if shown with its reason
            assert pair.reason
            excluded[row.task_id] = pair.reason
        else:
            assert pair.cell == CELL[kind], (row.task_id, kind, pair)
            expected[CELL[kind]] += 1
    assert result.to_dict()["pairs"] == expected
    assert result.tally.incomplete == len(excluded)
    assert result.ok and result.tally.failed == 0 and result.lost_writes == 0
    assert counters.store_lost == 0 and counters.forks_skipped == {}
    assert status["open"] == 0 and not any(p.status is PairStatus.OPEN for p in pairs.values())
    assert status["incomplete"] == len(excluded)
    assert excluded == {}, f"excluded pairs: {excluded}"  # with a 60 s retry window nothing needs excluding
