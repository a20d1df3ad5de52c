"""``CriticLoop``: a guard's own event loop thread, where native-async critics run, so that their deadline holds.

Why not await ``critic.ajudge`` on the caller's loop under ``asyncio.timeout``: that deadline only holds for a
critic that lets itself be cancelled and yields to the loop. A critic that swallows the cancellation
(``except CancelledError: await asyncio.sleep(...)``) keeps the step waiting until it returns, and one that blocks
(``time.sleep`` inside ``async def``) holds the caller's whole loop, every other request on it included. On a loop of
its own neither can hold the caller: :func:`critic_guard.critic_pool.ajudge_with_timeout` waits for the call's
future until the deadline and moves on (fail open); the critic is cancelled on its own loop and, if it answers
anyway, the answer is a late verdict, counted by the guard and never acted on.

A critic that blocks its loop shows as the loop's lag: after a deadline, :meth:`CriticLoop.check_lag` schedules a
probe on the loop; if the probe runs, or is still waiting at the next deadline, ``BLOCKED_AFTER_S`` or more after it
was scheduled, the loop was blocked, and ``on_blocked(lag_s)`` is called (the guard logs it once).

The thread starts on the first call; it is a daemon, so a critic stuck forever never keeps the process alive.
The hop there and back costs tens of microseconds per step (docs/critics-and-policy.md, "How critics run").
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, Generic, TypeVar

__all__ = ["BLOCKED_AFTER_S", "CriticCall", "CriticCancelled", "CriticLoop"]

T = TypeVar("T")

BLOCKED_AFTER_S = 0.25
"""A probe that waits this long behind a critic means the critic blocked its event loop."""

_SHUTDOWN_GRACE_S = 1.0


class CriticCancelled(Exception):
    """The critic's task ended cancelled (a critic raising ``CancelledError`` itself is a critic error, never a
    cancellation of the caller)."""


class CriticCall(Generic[T]):
    """One critic coroutine on the loop: ``future`` receives its result; :meth:`cancel` gives up on it."""

    __slots__ = ("_context", "_coro", "_loop", "_task", "future")

    def __init__(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.future: Future[T] = Future()
        self._coro: Coroutine[Any, Any, T] | None = coro
        self._context = context
        self._loop = loop
        self._task: asyncio.Task[T] | None = None

    def _start(self) -> None:
        """On the loop: start the task, unless the caller gave up before the loop got to it."""
        coro, self._coro = self._coro, None
        if coro is None:
            return
        if not self.future.set_running_or_notify_cancel():
            coro.close()
            return
        task = self._loop.create_task(coro, context=self._context)  # in the caller's context: spans nest
        self._task = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self.future.set_exception(CriticCancelled("the critic's task was cancelled"))
        elif (exc := task.exception()) is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(task.result())

    def cancel(self) -> None:
        """Give up (from any thread): a call not started never starts; a running one is cancelled on its loop."""
        if self.future.cancel():
            return
        with suppress(RuntimeError):  # the loop is closed: nothing left to cancel
            self._loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()


class CriticLoop:
    """A lazily started event loop in a daemon thread, for one guard's native-async critic calls."""

    def __init__(self, name: str, *, on_blocked: Callable[[float], object]) -> None:
        self._name = name
        self._on_blocked = on_blocked
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._probe_sent: float | None = None
        self._closed = False

    def submit(self, coro: Coroutine[Any, Any, T], context: contextvars.Context) -> CriticCall[T]:
        """Run ``coro`` on the loop in ``context`` (e.g. ``contextvars.copy_context()``, so the caller's span is
        current there); await ``asyncio.wrap_future(call.future)`` for its result."""
        try:
            loop = self._start()
            call = CriticCall(coro, context, loop)
            loop.call_soon_threadsafe(call._start)
        except BaseException:
            coro.close()  # never started: no "coroutine was never awaited" warning
            raise
        return call

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the critic loop is shut down")
            if self._loop is None or self._pid != os.getpid():  # a forked child has the loop but not its thread
                loop = asyncio.new_event_loop()
                threading.Thread(target=self._run, args=(loop,), name=self._name, daemon=True).start()
                weakref.finalize(self, _stop, loop)  # a guard dropped without close() still ends its thread
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Shut down: cancel what is left and give well-behaved critics a moment to unwind.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE_S))
        finally:
            loop.close()

    def check_lag(self) -> None:
        """After a deadline: report the loop as blocked if a probe waits ``BLOCKED_AFTER_S`` or more."""
        loop = self._loop
        if loop is None:
            return
        now = time.monotonic()
        with self._lock:
            sent = self._probe_sent
            if sent is None:
                self._probe_sent = now
        if sent is None:
            with suppress(RuntimeError):  # closed loop: nothing to measure
                loop.call_soon_threadsafe(self._probe)
        elif now - sent >= BLOCKED_AFTER_S:
            self._on_blocked(now - sent)

    def _probe(self) -> None:
        with self._lock:
            sent, self._probe_sent = self._probe_sent, None
        if sent is not None and (lag := time.monotonic() - sent) >= BLOCKED_AFTER_S:
            self._on_blocked(lag)

    def shutdown(self) -> None:
        """Stop the loop (running critics are cancelled; one that ignores it dies with the process). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
        if loop is not None:
            _stop(loop)


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    with suppress(RuntimeError):  # closed already
        loop.call_soon_threadsafe(loop.stop)
