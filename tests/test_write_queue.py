"""The write queue (critic_guard/write_queue.py): order kept, transient failures retried, nothing lost silently."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from critic_guard.store.base import UnknownRunError
from critic_guard.write_queue import Batch, WriteQueue


class Flaky:
    """A write that fails ``failures`` times (like a locked store), then appends ``name`` to ``log``."""

    def __init__(self, name: str, log: list[str], failures: int = 0) -> None:
        self.name, self.log, self.failures, self.calls = name, log, failures, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise sqlite3.OperationalError("database is locked")
        self.log.append(self.name)


def test_writes_are_retried_until_they_succeed_and_keep_their_order() -> None:
    log: list[str] = []
    queue = WriteQueue(retry_for_s=30.0)
    first, second, third = Flaky("add_run", log, failures=3), Flaky("open_pair", log), Flaky("end_run", log, 1)
    for write in (first, second, third):
        assert queue.put(write.name, write, run_id="r1", task_id="t1")
    assert queue.busy
    assert queue.wait(timeout=30.0)
    queue.close()
    assert log == ["add_run", "open_pair", "end_run"]  # a later write never overtakes a failing one
    assert (first.calls, second.calls, third.calls) == (4, 1, 2)
    assert (queue.queued, queue.recovered, queue.lost, queue.busy) == (3, 3, (), False)


def test_a_write_still_failing_at_the_end_of_its_window_is_lost_with_its_task() -> None:
    log: list[str] = []
    queue = WriteQueue(retry_for_s=0.2)
    never = Flaky("record_outcome", log, failures=10**9)
    queue.put("record_outcome", never, run_id="r7", task_id="t7")
    queue.put("end_run", Flaky("end_run", log), run_id="r8", task_id="t8")
    assert queue.wait(timeout=30.0)
    [lost] = queue.lost
    assert (lost.what, lost.run_id, lost.task_id) == ("record_outcome", "r7", "t7")
    assert "database is locked" in lost.error and never.calls > 1  # retried, then given up
    assert log == ["end_run"]  # the queue went on with the next write
    queue.close()


def test_an_error_retrying_cannot_fix_is_lost_at_once() -> None:
    queue = WriteQueue(retry_for_s=30.0, permanent=(UnknownRunError,))
    calls: list[int] = []

    def unknown() -> None:
        calls.append(1)
        raise UnknownRunError("unknown run id 'ghost'")

    queue.put("end_run", unknown, run_id="ghost", task_id=None)
    assert queue.wait(timeout=30.0)
    assert len(calls) == 1 and [w.what for w in queue.lost] == ["end_run"]
    queue.close()


def test_a_full_or_closed_queue_refuses_and_counts_the_write() -> None:
    gate = threading.Event()
    queue = WriteQueue(retry_for_s=30.0, max_pending=1)
    assert queue.put("start_run", gate.wait, run_id="r1", task_id="t1")
    assert not queue.accepting() and not queue.put("open_pair", lambda: None, run_id="r1", task_id="t1")
    gate.set()
    queue.close()
    assert not queue.put("end_run", lambda: None, run_id="r1", task_id="t1")
    assert [(w.what, w.task_id) for w in queue.lost] == [("open_pair", "t1"), ("end_run", "t1")]
    assert "full" in queue.lost[0].error and "closed" in queue.lost[1].error


def test_wait_reports_writes_still_pending() -> None:
    gate = threading.Event()
    queue = WriteQueue(retry_for_s=30.0)
    queue.put("start_run", gate.wait, run_id="r1", task_id="t1")
    assert queue.wait(timeout=0.01) is False
    gate.set()
    assert queue.wait(timeout=30.0) is True
    queue.close()


def test_background_writes_are_batched_in_order_and_a_failed_batch_is_retried_write_by_write() -> None:
    """Consecutive background writes of one batch are applied together; a batch that fails is retried one write at
    a time, in order, and the failure is reported once (``on_failure``) and counted as deferred."""
    log: list[str] = []
    batches: list[list[str]] = []
    failures: list[Exception] = []
    gate = threading.Event()

    def apply(writes: list[Any]) -> None:
        names = [w.name for w in writes]
        batches.append(names)
        if "bad" in names:
            raise sqlite3.OperationalError("database is locked")
        for write in writes:
            write()

    batch = Batch(apply)
    queue = WriteQueue(retry_for_s=30.0, on_failure=failures.append)
    writes = [Flaky("a", log), Flaky("b", log), Flaky("bad", log, failures=1), Flaky("c", log)]
    pair = Flaky("pair", log)
    holding = threading.Event()

    def hold() -> None:  # keeps the writer thread busy until everything below is queued
        holding.set()
        gate.wait()

    assert queue.put("hold", hold, run_id="r", task_id=None, tried=False)
    assert holding.wait(30.0)
    for write in writes[:2]:
        assert queue.put(write.name, write, run_id="r", task_id=None, tried=False, batch=batch)
    assert queue.put("pair", pair, run_id="r", task_id=None, tried=False)  # not batched: ends the first batch
    for write in writes[2:]:
        assert queue.put(write.name, write, run_id="r", task_id=None, tried=False, batch=batch)
    gate.set()
    assert queue.wait(timeout=30.0)
    queue.close()
    assert batches == [["a", "b"], ["bad", "c"]]
    assert log == ["a", "b", "pair", "bad", "c"]  # the failed batch's writes alone, in order
    assert [str(f) for f in failures] == ["database is locked"]  # "bad" alone failed once, then was retried
    assert (queue.background, queue.queued, queue.recovered, queue.lost) == (6, 1, 1, ())  # with the holder


def test_settle_waits_for_the_first_attempt_of_background_writes_but_not_for_retries() -> None:
    log: list[str] = []
    release = threading.Event()

    def slow() -> None:
        release.wait()
        log.append("slow")

    queue = WriteQueue(retry_for_s=1.0)
    assert queue.put("slow", slow, run_id="r", task_id=None, tried=False)
    queue.settle(0.01)  # gives up after its bound while the first attempt runs
    assert log == []
    release.set()
    queue.settle(30.0)
    assert log == ["slow"]
    failing = Flaky("locked", log, failures=10**6)
    assert queue.put("locked", failing, run_id="r", task_id=None, tried=False)
    queue.settle(30.0)  # returns once its first attempt failed (a reader could not see it anyway)
    assert queue.retrying and queue.queued == 1
    queue.close()  # the failing write is lost at the end of its window, and says so
    assert [w.what for w in queue.lost] == ["locked"]


def test_waiting_for_one_task_ends_when_its_writes_are_settled_not_when_the_queue_is_empty() -> None:
    """The pilot decides a task's fate from ``lost`` after this wait: a write lost at the end of its window is in
    ``lost`` by then, while other tasks' writes (here one held at a gate) may keep the queue busy."""
    gate = threading.Event()
    log: list[str] = []
    queue = WriteQueue(retry_for_s=0.2)
    queue.put("record_outcome", Flaky("record_outcome", log, failures=10**9), run_id="r1", task_id="t1")
    queue.put("end_run", Flaky("end_run", log), run_id="r1", task_id="t1")
    queue.put("start_run", gate.wait, run_id="r2", task_id="t2")
    assert queue.wait(timeout=30.0, task_id="t1")
    assert [(w.what, w.task_id) for w in queue.lost] == [("record_outcome", "t1")]  # recorded before the wait ends
    assert log == ["end_run"] and queue.busy  # t1's writes are settled; t2's is still queued
    assert queue.wait(timeout=0.01, task_id="t2") is False
    queue.put("end_run", lambda: None, run_id="r3", task_id=None)  # a write of an unknown task may be anyone's
    assert queue.wait(timeout=0.01, task_id="t1") is False
    gate.set()
    assert queue.wait(timeout=30.0, task_id="t1") and not queue.busy
    queue.close()
