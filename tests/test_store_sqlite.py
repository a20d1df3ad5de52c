"""The SQLite store: the shared suite on a file and in memory, plus what is specific to SQLite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_suite import *  # noqa: F403 (the shared backend suite)
from store_suite import StoreFactory, make_run, make_step

from critic_guard.store import SQLiteStore, Store
from critic_guard.store.sqlite import MIGRATIONS, migrate


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteStore]:
    path = tmp_path / "guard.db" if request.param == "file" else ":memory:"
    with SQLiteStore(path) as opened:
        yield opened


@pytest.fixture
def store_factory(tmp_path: Path) -> StoreFactory:
    """Each call opens another connection to one file, as a second process (replica) or a restart would."""
    path = tmp_path / "shared.db"

    def open_another() -> Store:
        return SQLiteStore(path)

    return open_another


def test_wal_and_synchronous_normal(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as store:
        assert store.schema_version == MIGRATIONS[-1][0] == 4
        store.add_run(make_run("r1"))
        assert (tmp_path / "g.db-wal").exists()
        with store._lock:
            assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    other.close()


def test_data_survives_reopening_and_migration_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with SQLiteStore(path) as store:
        store.add_run(make_run("r1"))
        store.add_step(make_step("r1", 2, p_fail=0.75))
    with SQLiteStore(path) as store:
        assert store.get_run("r1") == make_run("r1")
        assert [s.p_fail for s in store.steps_of("r1")] == [0.75]
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn) == 4
    assert conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(1,), (2,), (3,), (4,)]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"schema_version", "runs", "steps", "outcomes", "pairs", "guards", "transitions", "pilot_tasks",
                      "pair_monitor"}  # fmt: skip
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    conn.close()
    with pytest.raises(RuntimeError, match="newer critic-guard"):
        SQLiteStore(path)


def test_two_stores_on_one_file_write_concurrently(tmp_path: Path) -> None:
    """Two connections (as two processes would have) share the file through SQLite's locking."""
    path = tmp_path / "shared.db"
    stores = [SQLiteStore(path), SQLiteStore(path)]
    stores[0].add_run(make_run("r1"))

    def work(k: int) -> None:
        for i in range(100):
            stores[k].add_step(make_step("r1", i, attempt=k))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stores[0].flush()  # its batched steps, committed now (another store would see them within 50 ms anyway)
    steps = stores[1].steps_of("r1")
    assert len(steps) == 200
    assert [(s.step, s.attempt) for s in steps[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for store in stores:
        store.close()


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    store.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.get_run("r1")


def test_non_json_task_values_are_stored_as_text(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "g.db") as store:
        store.add_run(make_run("r1", task={"path": tmp_path / "x", "n": 1}))
        assert store.get_run("r1").task == {"path": str(tmp_path / "x"), "n": 1}


def test_a_version_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.close()
    with SQLiteStore(path) as store:
        assert store.schema_version == 4
        store.add_run(make_run("r1"))
        assert store.get_run("r1") == make_run("r1")
        assert store.pairs_of_run("r1") == [] and store.guard_keys() == []


def test_forget_old_runs(tmp_path: Path) -> None:
    with SQLiteStore(":memory:") as store:
        for i in range(6):
            store.add_run(make_run(f"r{i}", started_at=float(i)))
            store.add_step(make_step(f"r{i}", 0))
            store.record_outcome(f"r{i}", True, recorded_at=1.0)
        assert store.forget_old_runs(4) == 2
        assert [r.run_id for r in store.runs()] == ["r2", "r3", "r4", "r5"]
        assert store.steps_of("r0") == [] and len(store.steps_of("r2")) == 1
        assert store.forget_old_runs(4) == 0
        with pytest.raises(ValueError, match="keep must be >= 0"):
            store.forget_old_runs(-1)
