"""Running critics safely: a timeout on every call, and a bounded pool that hung critics cannot exhaust silently.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at interpreter exit, so one critic stuck
in a network call would keep the process alive forever. :class:`CriticPool` uses daemon threads instead.

Bounded behaviour with hung critics: a call whose caller timed out but which is still running counts as *hung*.
Hung calls keep their worker until they return. When every worker is hung, :meth:`CriticPool.submit` raises
:class:`CriticPoolExhausted` at once (the guard fails open with "critic pool exhausted") instead of queueing work
that no thread will ever pick up. Calls that merely wait for a busy worker count against their own timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from critic_guard.critics import Critic, MalformedVerdictError, is_native_async
from critic_guard.types import StepContext, Verdict

__all__ = [
    "CriticPool",
    "CriticPoolExhausted",
    "CriticTimeout",
    "ajudge_with_timeout",
    "describe_error",
    "judge_with_timeout",
]

T = TypeVar("T")
_MAX_ERROR_CHARS = 300


class CriticPoolExhausted(RuntimeError):
    """Every worker is stuck in a timed-out critic call."""


class CriticTimeout(Exception):
    """The critic did not answer within the configured timeout."""


_WorkItem = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class CriticPool:
    """At most ``max_workers`` daemon threads, started on demand, for sync critic calls."""

    def __init__(self, max_workers: int = 8, *, name: str = "critic-guard") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._hung = 0
        self._closed = False

    @property
    def hung(self) -> int:
        """Calls abandoned after a timeout that are still running."""
        return self._hung

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("critic pool is shut down")
            if self._hung >= self.max_workers:
                raise CriticPoolExhausted(
                    f"critic pool exhausted: all {self.max_workers} workers are stuck in timed-out critic calls"
                )
            self._queue.put((future, fn, args))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def abandon(self, future: Future[Any]) -> None:
        """The caller gave up on ``future``: cancel it if it has not started, else count it hung until it returns."""
        if future.cancel():
            return
        with self._lock:
            self._hung += 1
        future.add_done_callback(self._unhang)

    def _unhang(self, _: Future[Any]) -> None:
        with self._lock:
            self._hung -= 1

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # delivered to the waiting caller, who decides
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args
            self._idle.release()

    def shutdown(self) -> None:
        """Stop idle workers; hung ones are daemons and die with the process. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)


def _checked(critic: Critic, out: object) -> Verdict:
    if not isinstance(out, Verdict):
        raise MalformedVerdictError(f"critic {critic.name!r} returned {type(out).__name__}, expected a Verdict")
    return out


def judge_with_timeout(critic: Critic, ctx: StepContext, timeout_s: float | None, pool: CriticPool) -> Verdict:
    """Call ``critic.judge`` in ``pool`` and wait at most ``timeout_s``; inline when the timeout is None."""
    if timeout_s is None:
        return _checked(critic, critic.judge(ctx))
    # In the caller's context (the current span, so the critic's own LLM spans nest under the step).
    future = pool.submit(contextvars.copy_context().run, critic.judge, ctx)
    try:
        out = future.result(timeout=timeout_s)
    except TimeoutError:
        if future.done():  # the critic's own TimeoutError, or it finished right at the deadline
            out = future.result()
        else:
            pool.abandon(future)
            raise CriticTimeout(f"timeout after {timeout_s}s") from None
    return _checked(critic, out)


async def ajudge_with_timeout(critic: Critic, ctx: StepContext, timeout_s: float | None, pool: CriticPool) -> Verdict:
    """Await a native-async critic under the timeout; run a sync one in ``pool`` so it cannot block the loop."""
    deadline = asyncio.timeout(timeout_s)
    if is_native_async(critic):
        try:
            async with deadline:
                out = await critic.ajudge(ctx)
        except TimeoutError:
            if deadline.expired():
                raise CriticTimeout(f"timeout after {timeout_s}s") from None
            raise
        return _checked(critic, out)
    future = pool.submit(contextvars.copy_context().run, critic.judge, ctx)
    try:
        async with deadline:
            out = await asyncio.wrap_future(future)
    except TimeoutError:
        if deadline.expired():
            pool.abandon(future)
            raise CriticTimeout(f"timeout after {timeout_s}s") from None
        raise
    except asyncio.CancelledError:
        pool.abandon(future)
        raise
    return _checked(critic, out)


def describe_error(exc: BaseException) -> str:
    """A short, single-line reason for the store and traces, e.g. ``"ValueError: bad json"``."""
    if isinstance(exc, CriticTimeout | CriticPoolExhausted):
        text = str(exc)
    else:
        message = " ".join(str(exc).split())
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."
