"""The background step writer: steps leave the agent's path, and no accepted step is lost except to a kill."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from critic_guard.store.base import StepRecord, StoreBusyError
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.store.step_writer import StepWriter
from critic_guard.types import Arm
from tests.store_suite import make_run, make_step


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as other:  # another connection: sees only committed rows
        return int(other.execute("SELECT COUNT(*) FROM steps").fetchone()[0])


def test_batches_in_order_and_flushes_on_demand() -> None:
    batches: list[list[int]] = []
    writer = StepWriter(lambda steps: batches.append([s.step for s in steps]), interval_s=3600)
    for i in range(5):
        writer.add(make_step("r", i))
    assert batches == []  # nothing written on the caller's path
    writer.flush()
    writer.add(make_step("r", 5))
    writer.close()
    assert batches == [[0, 1, 2, 3, 4], [5]]
    with pytest.raises(RuntimeError, match="closed"):
        writer.add(make_step("r", 6))


def test_the_thread_writes_within_the_interval() -> None:
    written = threading.Event()
    writer = StepWriter(lambda steps: written.set(), interval_s=0.01)
    writer.add(make_step("r", 0))
    assert written.wait(10)  # bounded: the thread wakes every 10 ms
    writer.close()


def test_a_failing_row_is_counted_and_the_writer_goes_on() -> None:
    calls: list[Sequence[StepRecord]] = []

    def insert(steps: Sequence[StepRecord]) -> None:
        calls.append(steps)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")

    writer = StepWriter(insert, interval_s=3600)
    writer.add(make_step("r", 0))
    writer.flush()
    writer.add(make_step("r", 1))
    writer.close()
    assert writer.lost == 1 and [s.step for s in calls[1]] == [1]


def _refusing(poison: set[int], written: list[int], calls: list[int]) -> Callable[[Sequence[StepRecord]], None]:
    """An insert that writes a batch atomically, or refuses all of it if it holds a poison step."""

    def insert(steps: Sequence[StepRecord]) -> None:
        calls.append(len(steps))
        if any(s.step in poison for s in steps):
            raise sqlite3.ProgrammingError("Error binding parameter 5: type 'dict' is not supported")
        written.extend(s.step for s in steps)

    return insert


def test_a_row_the_store_refuses_loses_only_itself() -> None:
    written: list[int] = []
    calls: list[int] = []
    writer = StepWriter(_refusing({2, 4}, written, calls), interval_s=3600)
    for i in range(6):
        writer.add(make_step("r", i))
    writer.close()
    assert written == [0, 1, 3, 5]  # in order, the refused rows only missing
    assert writer.lost == 2
    assert calls == [6, 1, 1, 1, 1, 1, 1]  # the batch, then row by row


def test_an_unavailable_store_loses_the_batch_without_a_try_per_row() -> None:
    calls: list[int] = []

    def insert(steps: Sequence[StepRecord]) -> None:
        calls.append(len(steps))
        raise sqlite3.OperationalError("database is locked")

    writer = StepWriter(insert, interval_s=3600, unavailable=(sqlite3.OperationalError,))
    for i in range(4):
        writer.add(make_step("r", i))
    writer.close()
    assert (calls, writer.lost) == ([4], 4)  # one busy timeout, not one per row


def test_an_outage_while_writing_row_by_row_loses_the_rest_at_once() -> None:
    calls: list[int] = []
    written: list[int] = []

    def insert(steps: Sequence[StepRecord]) -> None:
        calls.append(len(steps))
        if len(steps) > 1 or steps[0].step == 0:
            raise ValueError("a value the store refuses")
        if steps[0].step == 2:
            raise sqlite3.OperationalError("database is locked")
        written.extend(s.step for s in steps)

    writer = StepWriter(insert, interval_s=3600, unavailable=(sqlite3.OperationalError,))
    for i in range(5):
        writer.add(make_step("r", i))
    writer.close()
    assert written == [1]
    assert calls == [5, 1, 1, 1]  # the batch, rows 0-2; rows 3-4 lost with row 2
    assert writer.lost == 4


def test_store_reads_its_own_writes_and_other_connections_see_them_soon(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.add_run(make_run("r", arm=Arm.CONTROL))
    for i in range(3):
        store.add_step(make_step("r", i))
    assert [s.step for s in store.steps_of("r")] == [0, 1, 2]  # flushed before reading
    store.add_step(make_step("r", 3))
    deadline = time.monotonic() + 10
    while _rows(path) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _rows(path) == 4  # committed by the background thread, without any read here
    store.add_step(make_step("r", 4))
    store.close()  # close flushes
    assert _rows(path) == 5


def test_a_bounded_flush_that_cannot_write_gives_its_rows_back_in_order() -> None:
    """A read on the user's path flushes within its wait bound; when that write fails (the bound ran out, the store
    is locked), its rows go back ahead of later steps for the writer thread: nothing is lost because it could not
    wait."""
    attempts: list[list[int]] = []

    def insert(steps: Sequence[StepRecord]) -> None:
        attempts.append([s.step for s in steps])
        if len(attempts) == 1:
            raise StoreBusyError("the bounded caller's wait ran out")

    writer = StepWriter(insert, interval_s=3600)
    writer.add(make_step("r", 0))
    writer.add(make_step("r", 1))
    with pytest.raises(StoreBusyError):
        writer.flush(timeout=0.05)
    writer.add(make_step("r", 2))
    writer.close()
    assert attempts == [[0, 1], [0, 1, 2]]
    assert writer.lost == 0
