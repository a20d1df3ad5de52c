"""``WriteQueue``: the guard's run, outcome and pair writes, applied in order by one background thread.

Why (docs/faults.md): runs, outcomes and pairs are what the statistics rest on, so a write of one must not be lost
because the store was locked or down for a few seconds; but a user's request must not wait for the store either,
and an async one must not block its event loop on it (docs/faults.md, "No blocking call on the event loop").

Two kinds of writes come here:

* **background writes** (``put(..., tried=False)``): what the integrations write on the user's path (a run's
  start and end, its outcome, a fork's run and pair). The caller returns at once; the thread makes the first attempt.
  Consecutive run starts and ends are written in one transaction (``batch``), as step rows are
  (:mod:`critic_guard.store.step_writer`).
* **retries** (``put(..., tried=True)``): a write the guard tried itself, with a short bound
  (``GuardConfig.store_wait_s``), and that failed.

A write whose attempt fails is retried with exponential backoff until it succeeds or its retry window
(``GuardConfig.store_retry_s``) has passed. Order is kept: the thread applies writes strictly in order, and while
anything is queued the guard queues every later write too (see :attr:`WriteQueue.busy`), so a run is inserted
before it is ended, a pair is opened before it is completed or excluded. Every write is idempotent (insert-or-ignore,
completing an open pair, excluding an open pair), so a retry after a write that did commit but reported an error
changes nothing. A reader in this process sees every background write that had its first attempt
(:meth:`WriteQueue.settle`, which the store calls before it reads).

Nothing is dropped silently: a write that still fails at the end of its window, fails with an error retrying cannot
fix (``permanent``), or finds the queue full or closed is a :class:`LostWrite`, logged and kept in :attr:`lost`
(with the run and task it belongs to, so the pilot can name the task and run it again). What a crash of the process
can lose: the background writes not yet applied, normally the last few milliseconds (the thread wakes at once).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from critic_guard.critic_pool import describe_error

__all__ = ["LostWrite", "WriteQueue"]

logger = logging.getLogger("critic_guard")

_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 1.0
_EXIT_WAIT_S = 5.0  # at interpreter exit (a guard never closed), how long queued writes may still take


@dataclass(frozen=True, slots=True)
class LostWrite:
    """A pilot-critical write that could not be made: what it was, whose run and task, and the last error."""

    what: str
    run_id: str | None
    task_id: str | None
    error: str
    at: float


@dataclass(slots=True)
class _Pending:
    what: str
    write: Callable[[], object]
    run_id: str | None
    task_id: str | None
    deadline: float
    tried: bool  # False: a background write whose first attempt is still to come
    batch: Batch | None = None  # writes with the same batch are applied together, in one transaction


class Batch:
    """How consecutive background writes of one kind are applied together: ``apply(writes)`` runs them in one
    transaction (e.g. :meth:`critic_guard.store.Store.batch`). If the batch fails, each write is retried alone."""

    def __init__(self, apply: Callable[[list[Callable[[], object]]], object], *, max_size: int = 256) -> None:
        self.apply = apply
        self.max_size = max_size


class WriteQueue:
    """Retries queued writes in order on one daemon thread (started on first use).

    Args:
        retry_for_s: how long a write is retried after it was queued before it counts as lost.
        permanent: errors that retrying cannot fix (e.g. an unknown run): the write is lost at once.
        max_pending: writes queued at most; more are lost (bounded memory during a long outage).
    """

    def __init__(
        self,
        *,
        retry_for_s: float,
        permanent: tuple[type[BaseException], ...] = (),
        max_pending: int = 10_000,
        name: str = "critic-guard-writes",
        on_failure: Callable[[Exception], object] | None = None,
    ) -> None:
        self.retry_for_s = retry_for_s
        self.on_failure = on_failure  # called with the error of a background write's failed first attempt
        self.permanent = permanent
        self.max_pending = max_pending
        self.name = name
        self.queued = 0  # writes that failed an attempt and were queued for retries (deferred)
        self.recovered = 0  # of those, written by a retry
        self.background = 0  # background writes handed to the queue (their first attempt is the thread's)
        self._pending: deque[_Pending] = deque()
        self._lost: list[LostWrite] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._atexit = _finish_at_exit(weakref.ref(self))
        atexit.register(self._atexit)

    @property
    def busy(self) -> bool:
        """Whether a write is queued or being retried (later writes must queue behind it to keep their order)."""
        return bool(self._pending)

    @property
    def retrying(self) -> bool:
        """Whether the oldest queued write has failed an attempt (the store is busy or unreachable)."""
        pending = self._pending
        return bool(pending) and pending[0].tried

    @property
    def lost(self) -> tuple[LostWrite, ...]:
        with self._cond:
            return tuple(self._lost)

    def accepting(self, n: int = 1) -> bool:
        """Whether ``n`` more writes can be queued now."""
        return not self._closed and len(self._pending) + n <= self.max_pending

    def put(
        self,
        what: str,
        write: Callable[[], object],
        *,
        run_id: str | None,
        task_id: str | None,
        tried: bool = True,
        batch: Batch | None = None,
    ) -> bool:
        """Queue ``write`` (a callable that raises on failure); False when it could not be queued (lost).

        ``tried``: whether the caller attempted it already (a retry) or leaves the first attempt to the thread (a
        background write). ``batch``: how to apply it together with neighbouring writes of the same batch.
        """
        with self._cond:
            refused = "the write queue is closed" if self._closed else None
            if refused is None and len(self._pending) >= self.max_pending:
                refused = f"the write queue is full ({self.max_pending} writes waiting for the store)"
            if refused is None:
                deadline = time.monotonic() + self.retry_for_s
                self._pending.append(_Pending(what, write, run_id, task_id, deadline, tried, batch))
                if tried:
                    self.queued += 1
                else:
                    self.background += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return True
        self.note_lost(what, run_id, task_id, refused)
        return False

    def wait(self, timeout: float | None = None, *, task_id: str | None = None) -> bool:
        """Block until every queued write is written or lost; True if that happened within ``timeout``.

        With ``task_id``, only until none of that task's writes (nor any write of an unknown task) is queued: a
        pilot decides a task's fate from :attr:`lost` once its own writes are settled, while other tasks' later
        writes may keep the queue busy."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._holds(task_id):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def settle(self, timeout: float | None) -> None:
        """Wait (at most ``timeout``) until every queued background write had its first attempt, so that a reader
        sees what was handed here before it read. Returns at once on the queue's own thread (its writes read the
        store), and while the store is failing (the retried writes are not in the store either way)."""
        if not self._pending or threading.current_thread() is self._thread:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending and not self._pending[0].tried:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._cond.wait(left)

    def _holds(self, task_id: str | None) -> bool:
        if task_id is None:
            return bool(self._pending)
        return any(p.task_id in (task_id, None) for p in self._pending)

    def close(self) -> None:
        """Stop accepting writes, let the thread finish the queued ones (each within its window), and stop it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        atexit.unregister(self._atexit)

    def _loop(self) -> None:
        delay = _FIRST_DELAY_S
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                head = self._pending[0]
                group = self._batch_at_head(head)
            if len(group) > 1 and self._attempt_batch(group):
                with self._cond:
                    for _ in group:
                        self._pending.popleft()
                    self._cond.notify_all()
                continue
            error = self._attempt(head)
            if error is None or time.monotonic() >= head.deadline or isinstance(error, self.permanent):
                if error is not None:
                    self.note_lost(head.what, head.run_id, head.task_id, describe_error(error))
                with self._cond:
                    self._pending.popleft()
                    self.recovered += error is None and head.tried
                    self._cond.notify_all()
                delay = _FIRST_DELAY_S
                continue
            if not head.tried:  # a background write's first attempt failed: from now on it is a retried write
                with self._cond:
                    head.tried = True
                    self.queued += 1
                    self._cond.notify_all()
                if self.on_failure is not None:
                    self.on_failure(error)
            time.sleep(min(delay, max(0.0, head.deadline - time.monotonic())))
            delay = min(delay * 2, _MAX_DELAY_S)

    def _batch_at_head(self, head: _Pending) -> list[_Pending]:
        """The untried writes of ``head``'s batch at the front of the queue (call with the condition held)."""
        if head.batch is None or head.tried:
            return [head]
        group: list[_Pending] = []
        for pending in self._pending:
            if pending.batch is not head.batch or pending.tried or len(group) >= head.batch.max_size:
                break
            group.append(pending)
        return group

    @staticmethod
    def _attempt_batch(group: list[_Pending]) -> bool:
        """Apply ``group`` in one transaction; False (nothing applied) if that failed: each is then tried alone."""
        batch = group[0].batch
        assert batch is not None
        try:
            batch.apply([pending.write for pending in group])
        except Exception:
            return False
        return True

    @staticmethod
    def _attempt(pending: _Pending) -> Exception | None:
        try:
            pending.write()
        except Exception as exc:
            return exc
        return None

    def note_lost(self, what: str, run_id: str | None, task_id: str | None, error: str) -> None:
        """Record a write that cannot be made (also for callers that gave up on one themselves)."""
        with self._cond:
            self._lost.append(LostWrite(what, run_id, task_id, error, time.time()))
        logger.error("critic-guard: %s of run %s (task %s) is lost: %s", what, run_id, task_id, error)


def _finish_at_exit(ref: weakref.ref[WriteQueue]) -> Callable[[], None]:
    """An exit hook for a queue whose guard was never closed: give queued writes a few seconds, then say (as an
    error, with the count) what was not written rather than let the daemon thread die with it silently."""

    def finish() -> None:
        queue = ref()
        if queue is None or not queue.busy or queue.wait(_EXIT_WAIT_S):
            return
        logger.error(
            "critic-guard: %d run, outcome or pair writes were still waiting for the store at exit and are lost "
            "(close the guard to wait for them)",
            len(queue._pending),
        )

    return finish
