"""``StepWriter``: reviewed steps reach the store in batches, from a background thread, off the agent's step path.

Why: a step row is written at every agent step, and one committed SQLite transaction costs 20 µs in a tight loop but
80-100 µs inside a running agent (measured in benchmarks/overhead.py: the WAL append competes with everything else
the step does). Steps are the diagnostic record (verdicts, decisions, latencies); runs, outcomes, pairs and the
lifecycle, which the statistics rest on, stay synchronous. So ``add`` only appends to an in-memory deque (well
under a microsecond, no thread wake-up), and a daemon thread writes what has accumulated every ``interval_s`` in
one transaction.

What a crash can lose: the steps of the last ``interval_s`` (50 ms by default) if the process is killed (kill -9,
power loss). A normal exit loses nothing (``close`` and an ``atexit`` hook flush), and a reader in this process never
misses a step: the store flushes before it reads steps (a read inside ``Store.wait_at_most`` waits for that flush at
most its bound, then raises, keeping the queued rows). Another process sees a step at most ``interval_s`` late.

A row the store cannot write never takes other rows with it: when a batch fails, its rows are written one by one and
only those refused are lost. When the store itself is unavailable (the backend's ``unavailable`` errors: a lock
held past the busy timeout, a server gone), writing row by row would only meet the same outage once per row, so the
batch is lost whole. Every lost row is counted in ``lost`` (``Store.lost_steps``, ``GuardCounters.lost_steps``) and
logged (once, then at debug level); lost rows are not retried (fail open: the agent goes on).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeAlias

from critic_guard.store.records import StepRecord, StoreBusyError

__all__ = ["DEFAULT_INTERVAL_S", "StepWriter"]

logger = logging.getLogger("critic_guard")

DEFAULT_INTERVAL_S = 0.05

Errors: TypeAlias = tuple[type[Exception], ...]


class StepWriter:
    """Batches ``StepRecord`` writes: ``insert(batch)`` is called with every step added since the last call."""

    def __init__(
        self,
        insert: Callable[[Sequence[StepRecord]], None],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        unavailable: Errors = (),
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self.lost = 0
        self._failures = 0
        self._insert = insert
        self._unavailable = unavailable
        self._pending: deque[StepRecord] = deque()
        self._flushing = threading.Lock()  # one batch at a time, in insertion order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._atexit = _close_at_exit(weakref.ref(self))
        atexit.register(self._atexit)

    def add(self, step: StepRecord) -> None:
        """Queue a step (the hot path: a deque append; the writer thread is started on first use)."""
        if self._stop.is_set():
            raise RuntimeError("the step writer is closed")
        self._pending.append(step)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="critic-guard-steps", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self, timeout: float | None = None) -> None:
        """Write every queued step now, in the caller's thread (returns once they are committed or dropped).

        ``timeout``: a caller with a wait bound (a read on the user's path inside ``Store.wait_at_most``, which the
        store passes here) waits at most this long for a batch the writer thread is committing, e.g. one stuck
        behind a locked database for the store's whole busy timeout, then raises :class:`StoreBusyError`. If the
        bounded caller's own write fails, its rows go back to the front of the queue for the writer thread: a row
        is never lost because a caller could not wait (docs/faults.md).
        """
        if not self._flushing.acquire(timeout=-1 if timeout is None else timeout):
            raise StoreBusyError(f"the step writer stayed busy for {timeout:g}s (a batch waiting for the store)")
        try:
            batch: list[StepRecord] = []
            while self._pending:
                batch.append(self._pending.popleft())
            if not batch:
                return
            if timeout is not None:
                self._insert_or_give_back(batch)
                return
            try:
                self._insert(batch)
            except self._unavailable as exc:
                self._lose(batch, exc)
            except Exception as exc:
                if len(batch) == 1:
                    self._lose(batch, exc)
                else:
                    self._row_by_row(batch)
        finally:
            self._flushing.release()

    def _insert_or_give_back(self, batch: list[StepRecord]) -> None:
        """A bounded caller's write: on any failure (its short bound, a locked store, a bad row) the batch goes
        back, in order, ahead of later steps; the writer thread then writes it with its own patience and row-by-row
        fallback, and counts what it cannot write."""
        try:
            self._insert(batch)
        except BaseException:
            self._pending.extendleft(reversed(batch))
            raise

    def _row_by_row(self, batch: Sequence[StepRecord]) -> None:
        """After a failed batch: write each row alone, so that one bad row loses only itself."""
        for i, step in enumerate(batch):
            try:
                self._insert((step,))
            except self._unavailable as exc:
                self._lose(batch[i:], exc)
                return
            except Exception as exc:
                self._lose((step,), exc)

    def _lose(self, steps: Sequence[StepRecord], exc: Exception) -> None:
        self.lost += len(steps)
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        # one line (an outage is an operating condition, not a bug): the traceback is at debug level
        logger.log(
            level,
            "critic-guard: %d step record(s) not written (lost, counted in lost_steps; first: run %s step %d): %s",
            len(steps),
            steps[0].run_id,
            steps[0].step,
            exc,
        )
        logger.debug("critic-guard: step records not written", exc_info=exc)

    def close(self) -> None:
        """Stop the thread and write what is queued. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.flush()
        atexit.unregister(self._atexit)


def _close_at_exit(ref: weakref.ref[StepWriter]) -> Callable[[], None]:
    """An exit hook that flushes the writer if it still exists (a weak reference: the hook keeps nothing alive)."""

    def close() -> None:
        writer = ref()
        if writer is not None:
            writer.close()

    return close
