"""Bounded waits on the user's path (``Store.wait_at_most``, docs/faults.md) on a real SQLite file.

Inside the block a call gives up after the bound, whether another process holds the database write lock or another
thread holds the store's connection; outside it the 5 s busy timeout still applies, so the CLI and the background
writers keep waiting for a lock that is released soon.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from critic_guard.guard import CriticGuard
from critic_guard.store.base import RunRecord, StepRecord, StoreBusyError
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.types import Arm
from tests.store_suite import make_step


def run(run_id: str) -> RunRecord:
    return RunRecord(run_id, "agent/c/p", "agent", Arm.CONTROL, time.time())


def test_a_bounded_call_gives_up_on_a_locked_file_and_an_unbounded_one_still_waits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"), store.wait_at_most(0.05):
        store.add_run(run("r1"))
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    release.start()
    assert store.add_run(run("r2"))  # the default busy timeout (5 s) is back: it waits for the release
    release.join()
    assert [r.run_id for r in store.runs()] == ["r2"]
    other.close()
    store.close()


def test_a_bounded_call_gives_up_on_a_connection_busy_in_another_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    held, done = threading.Event(), threading.Event()

    def hold_the_connection() -> None:
        with store._reading():  # what a slow batch of the step writer does to other threads
            held.set()
            done.wait()

    holder = threading.Thread(target=hold_the_connection)
    holder.start()
    held.wait()
    with pytest.raises(StoreBusyError, match="busy"), store.wait_at_most(0.05):
        store.add_run(run("r1"))
    done.set()
    holder.join()
    assert store.add_run(run("r1"))
    store.close()


def test_wait_bounds_nest_to_the_tighter_one_and_reject_nonsense(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    assert store.wait_limit() is None
    with store.wait_at_most(0.5):
        with store.wait_at_most(2.0):
            assert store.wait_limit() == 0.5
        assert store.wait_limit() == 0.5
    assert store.wait_limit() is None
    with pytest.raises(ValueError, match="> 0"), store.wait_at_most(0):
        pass
    store.close()


def test_the_guard_fails_open_on_a_locked_store_and_writes_once_it_is_free(tmp_path: Path) -> None:
    """Outside any agent: start_run / end_run on a locked file return at once and are written later, in order."""
    path = tmp_path / "g.db"
    guard = CriticGuard(lambda ctx: 0.1, store=f"sqlite:///{path}", store_wait_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    run_id = guard.start_run(task={"task_id": "t1"})
    assert guard.end_run(run_id, success=True) == []  # queued behind the start: nothing completed yet
    during = guard.counters
    other.execute("COMMIT")
    other.close()
    assert guard.wait_for_writes(30)
    assert guard.store is not None and guard.store.get_run(run_id).status == "completed"
    outcome = guard.store.get_outcome(run_id)
    assert outcome is not None and outcome.success is True
    assert (during.store_errors, during.store_deferred) == (1, 3)  # one bounded attempt; three writes queued
    assert (guard.counters.store_recovered, guard.counters.store_lost) == (3, 0)
    guard.close()


def test_a_bounded_read_gives_up_while_the_step_writer_waits_on_a_locked_file(tmp_path: Path) -> None:
    """Reads flush queued steps first (``steps_of``, ``run_summaries``, ``flush``). While the step writer's batch
    waits for another process's write lock (here for the store's whole busy timeout, an hour), a read inside
    ``wait_at_most`` gives up after its bound instead of waiting for that batch, and no queued step is lost."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path, busy_timeout_s=3600.0)  # waiting it out would be a deadlock, not a slow test
    store.add_run(run("r1"))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    insert, writing = store._steps._insert, threading.Event()

    def insert_after_signal(steps: Sequence[StepRecord]) -> None:
        writing.set()  # the writer thread holds its flush lock and is about to meet the locked file
        insert(steps)

    store._steps._insert = insert_after_signal
    store.add_step(make_step("r1", 0))
    outcomes: dict[str, BaseException | None] = {}

    def bounded_reads() -> None:
        for name, read in (("steps_of", lambda: store.steps_of("r1")), ("summaries", store.run_summaries)):
            try:
                with store.wait_at_most(0.05):
                    read()
            except BaseException as exc:
                outcomes[name] = exc
            else:
                outcomes[name] = None

    try:
        assert writing.wait(30)
        store.add_step(make_step("r1", 1))  # queued behind the stuck batch
        reader = threading.Thread(target=bounded_reads)
        reader.start()
        reader.join(30)  # a deadlock detector: a bounded read returns after about 0.05 s however loaded the machine
        assert not reader.is_alive(), "a bounded read waited for the step writer's batch"
    finally:
        other.execute("COMMIT")
        other.close()
    assert all(isinstance(exc, StoreBusyError) for exc in outcomes.values()), outcomes
    assert set(outcomes) == {"steps_of", "summaries"}
    assert [s.step for s in store.steps_of("r1")] == [0, 1]  # unbounded: the writer's batch, then the queued one
    assert store.lost_steps == 0
    store.close()
