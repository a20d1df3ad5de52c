"""``WriteQueue``: the pilot-critical writes a busy or unreachable store refused, retried in order off the user's path.

Why (docs/faults.md): runs, outcomes and pairs are what the statistics rest on, so a write of one must not be lost
because the store was locked or down for a few seconds; but a user's request must not wait for the store either.
So the guard tries such a write once, with a short bound (``GuardConfig.store_wait_s``), and hands it here when
that fails. A daemon thread retries the oldest write with exponential backoff until it succeeds or its retry window
(``GuardConfig.store_retry_s``) has passed.

Order is kept: while anything is queued, the guard queues every later pilot-critical write too (see
:attr:`WriteQueue.busy`), and the thread applies them strictly in order, so a run is inserted before it is ended,
a pair is opened before it is completed or excluded. Every write is idempotent (insert-or-ignore, completing an
open pair, excluding an open pair), so a retry after a write that did commit but reported an error changes nothing.

Nothing is dropped silently: a write that still fails at the end of its window, fails with an error retrying cannot
fix (``permanent``), or finds the queue full or closed is a :class:`LostWrite`, logged and kept in :attr:`lost`
(with the run and task it belongs to, so the pilot can name the task and run it again).
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
    ) -> None:
        self.retry_for_s = retry_for_s
        self.permanent = permanent
        self.max_pending = max_pending
        self.name = name
        self.queued = 0  # writes ever handed to the queue
        self.recovered = 0  # of those, written by a retry
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
    def lost(self) -> tuple[LostWrite, ...]:
        with self._cond:
            return tuple(self._lost)

    def accepting(self, n: int = 1) -> bool:
        """Whether ``n`` more writes can be queued now."""
        return not self._closed and len(self._pending) + n <= self.max_pending

    def put(self, what: str, write: Callable[[], object], *, run_id: str | None, task_id: str | None) -> bool:
        """Queue ``write`` (a callable that raises on failure); False when it could not be queued (lost)."""
        with self._cond:
            refused = "the write queue is closed" if self._closed else None
            if refused is None and len(self._pending) >= self.max_pending:
                refused = f"the write queue is full ({self.max_pending} writes waiting for the store)"
            if refused is None:
                self._pending.append(_Pending(what, write, run_id, task_id, time.monotonic() + self.retry_for_s))
                self.queued += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return True
        self.note_lost(what, run_id, task_id, refused)
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued write is written or lost; True if that happened within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

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
            error = self._attempt(head)
            if error is None or time.monotonic() >= head.deadline or isinstance(error, self.permanent):
                if error is not None:
                    self.note_lost(head.what, head.run_id, head.task_id, describe_error(error))
                with self._cond:
                    self._pending.popleft()
                    self.recovered += error is None
                    self._cond.notify_all()
                delay = _FIRST_DELAY_S
                continue
            time.sleep(min(delay, max(0.0, head.deadline - time.monotonic())))
            delay = min(delay * 2, _MAX_DELAY_S)

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
