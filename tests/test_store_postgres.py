"""The PostgreSQL store: the shared suite against a real server, plus what is specific to PostgreSQL.

Every test gets its own schema (``search_path`` in the URL), so tests are independent and run on one server started once
per session (``postgres_url`` in tests/pg_fixtures.py; skipped locally without the binaries, a failure in CI).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import PoolClosed
from store_suite import *  # noqa: F403 (the shared backend suite)
from store_suite import StoreFactory, make_run, make_step

from critic_guard.critics import ConstantCritic
from critic_guard.guard import CriticGuard
from critic_guard.lifecycle import GuardState
from critic_guard.store import Store, open_store
from critic_guard.store.postgres import MIGRATIONS, PostgresStore
from critic_guard.types import StepContext, Verdict

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_schema_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(postgres_schema_url) as opened:
        yield opened


@pytest.fixture
def store_factory(postgres_schema_url: str) -> Iterator[StoreFactory]:
    """Each call opens another store (its own pool) on the test's schema, as a replica or a restart would."""
    opened: list[PostgresStore] = []

    def open_another() -> Store:
        opened.append(PostgresStore(postgres_schema_url))
        return opened[-1]

    yield open_another
    for each in opened:
        each.close()


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def test_open_store_url_gives_a_migrated_postgres_store(postgres_schema_url: str) -> None:
    store = open_store(postgres_schema_url)
    try:
        assert isinstance(store, PostgresStore)
        assert store.schema_version == MIGRATIONS[-1][0] == 4
        assert _tables(postgres_schema_url) == {
            "schema_version",
            "runs",
            "steps",
            "outcomes",
            "pairs",
            "guards",
            "transitions",
            "pilot_tasks",
            "pair_monitor",
        }
    finally:
        assert store is not None
        store.close()


def test_replicas_starting_at_once_migrate_once(postgres_schema_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            opened.append(PostgresStore(postgres_schema_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in opened:
        each.close()
    assert errors == [] and len(opened) == 4
    with psycopg.connect(postgres_schema_url) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(1,), (2,), (3,), (4,)]


def test_data_survives_reopening(postgres_schema_url: str) -> None:
    with PostgresStore(postgres_schema_url) as store:
        store.add_run(make_run("r1", task={"task_id": "t", "n": [1, 2.5, None]}))
        store.add_step(make_step("r1", 2, p_fail=0.75))
    with PostgresStore(postgres_schema_url) as store:
        assert store.get_run("r1") == make_run("r1", task={"task_id": "t", "n": [1, 2.5, None]})
        assert [s.p_fail for s in store.steps_of("r1")] == [0.75]


def test_newer_schema_is_refused(postgres_schema_url: str) -> None:
    PostgresStore(postgres_schema_url).close()
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(RuntimeError, match="newer critic-guard"):
        PostgresStore(postgres_schema_url)


def test_close_closes_the_pool(postgres_schema_url: str) -> None:
    store = PostgresStore(postgres_schema_url)
    store.close()
    store.close()
    with pytest.raises(PoolClosed):
        store.get_run("r1")


def test_repr_hides_the_password(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    store.url = postgres_url.replace("postgres@", "postgres:s3cret@")
    try:
        assert "s3cret" not in repr(store) and "user=postgres" in repr(store)
    finally:
        store.close()


def test_unreachable_server_is_a_clear_error() -> None:
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"cannot connect to the PostgreSQL store .* within 0\.5s"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", connect_timeout_s=0.5)
    assert time.perf_counter() - started < 5


_REPLICA = """
import sys
from critic_guard.critics import ConstantCritic
from critic_guard.guard import CriticGuard
url, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with CriticGuard(ConstantCritic(0.7), mode="auto", store=url, lifecycle_ttl_s=0.0) as guard:
    completed = 0
    for i in range(n):  # this process records one arm of every pair (disruptions: control wins)
        arm, success = ("c", True) if (i + k) % 2 == 0 else ("t", False)
        completed += len(guard.record_outcome(f"{arm}{i}", success))
print(completed)
"""


@pytest.mark.slow
def test_two_processes_complete_interleaved_pairs_exactly_once(postgres_schema_url: str, tmp_path: Path) -> None:
    """Two OS processes, each with its own pool, record the two arms of 40 pairs at the same time."""
    n = 40
    with CriticGuard(ConstantCritic(0.7), mode="auto", store=postgres_schema_url) as guard:
        for i in range(n):
            guard.start_run(run_id=f"c{i}")
            guard.start_run(run_id=f"t{i}", arm="treatment")  # type: ignore[arg-type]
            guard.open_pair(f"c{i}", control_run_id=f"c{i}", treatment_run_id=f"t{i}", flagged=True)
        script = tmp_path / "replica.py"
        script.write_text(_REPLICA)
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), postgres_schema_url, str(k), str(n)], stdout=subprocess.PIPE, text=True
            )
            for k in range(2)
        ]
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0]
        assert sum(int(out) for out in outputs) == n
        record = guard.lifecycle()
        assert (record.monitor.t, record.counts.n10, record.version) == (n, n, n)
        [transition] = guard.transitions()
        assert (transition.to_state, record.state) == (GuardState.DISABLED, GuardState.DISABLED)


def test_a_verdict_text_postgres_refuses_loses_only_its_rows_and_is_counted(store: PostgresStore) -> None:
    """PostgreSQL text cannot hold a NUL byte (SQLite can): the guard's rows for that run are lost, counted in
    ``lost_steps``, and the other runs' rows written in the same batches are all there."""

    def critic(ctx: StepContext) -> Verdict:
        return Verdict(0.2, rationale="quotes a binary \x00 tool output" if ctx.run_id == "bad" else "fine")

    guard = CriticGuard(critic, mode="on", store=store, capture_content=True)  # rationales kept at rest
    runs = ("a", "bad", "b")
    for run_id in runs:
        guard.start_run(run_id=run_id)
    messages = ({"role": "user", "content": "task"}, {"role": "assistant", "content": "step"})
    for step in range(3):
        for run_id in runs:
            assert guard.review(StepContext(run_id, step, messages)).verdict is not None
    assert [[s.step for s in store.steps_of(run_id)] for run_id in runs] == [[0, 1, 2], [], [0, 1, 2]]
    counters = guard.counters
    assert (counters.lost_steps, counters.verdicts, counters.critic_errors) == (3, 9, 0)
