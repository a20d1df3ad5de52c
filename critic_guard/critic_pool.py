"""Running critics safely: a timeout on every call, and a bounded pool that hung critics cannot exhaust silently.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at interpreter exit, so one critic stuck
in a network call would keep the process alive forever. :class:`CriticPool` uses daemon threads instead.

Bounded behaviour with hung critics: a call whose caller timed out but which is still running counts as *hung*.
Hung calls keep their worker until they return. When every worker is hung, :meth:`CriticPool.submit` raises
:class:`CriticPoolExhausted` at once (the guard fails open with "critic pool exhausted") instead of queueing work
that no thread will ever pick up. Calls that merely wait for a busy worker count against their own timeout.

A call given up at its deadline that still answers gives a *late verdict*: it goes to the caller's ``on_late``
(the guard counts it) and is never acted on. Native-async critics run on the guard's own event loop thread
(:mod:`critic_guard.critic_loop`), so their deadline holds too.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from critic_guard.critic_loop import CriticCancelled, CriticLoop
from critic_guard.critics import Critic, MalformedVerdictError, is_native_async, runs_on_caller_loop
from critic_guard.types import StepContext, Verdict

__all__ = [
    "CriticPool",
    "CriticPoolExhausted",
    "CriticTimeout",
    "LateVerdict",
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
                except asyncio.CancelledError:  # the critic's own: an error, not a cancellation of the caller
                    future.set_exception(CriticCancelled("the critic raised CancelledError"))
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


LateVerdict = Callable[[Verdict], object]
"""Called (from another thread) with the verdict of a call the caller gave up on at its deadline."""


def _checked(critic: Critic, out: object) -> Verdict:
    """The boundary: only a well-formed :class:`Verdict` enters the guard (see docs/critics-and-policy.md).

    A ``Verdict`` checked itself when it was made; a subclass may have skipped that, so it is rebuilt (and checked).
    """
    if type(out) is Verdict:
        return out
    if isinstance(out, Verdict):
        try:
            return Verdict(out.p_fail, out.rationale, out.label)
        except (TypeError, ValueError) as exc:
            raise MalformedVerdictError(f"critic {critic.name!r}: {exc}") from None
    raise MalformedVerdictError(f"critic {critic.name!r} returned {type(out).__name__}, expected a Verdict")


class _Pending(Protocol):
    """What a late verdict is read from: a ``concurrent.futures.Future`` or an ``asyncio.Task``."""

    def cancelled(self) -> bool: ...
    def exception(self) -> BaseException | None: ...
    def result(self) -> Any: ...


def _give_up(critic: Critic, future: Any, cancel: Callable[[], object], on_late: LateVerdict | None) -> None:
    """The deadline passed: stop waiting for ``future``; a verdict it still brings is passed to ``on_late``."""
    cancel()
    future.add_done_callback(functools.partial(_late, critic, on_late))


def _late(critic: Critic, on_late: LateVerdict | None, future: _Pending) -> None:
    if future.cancelled() or future.exception() is not None:  # (reading it: no "never retrieved" warning)
        return
    if on_late is not None:
        with contextlib.suppress(MalformedVerdictError):
            on_late(_checked(critic, future.result()))


def judge_with_timeout(
    critic: Critic,
    ctx: StepContext,
    timeout_s: float | None,
    pool: CriticPool,
    *,
    on_late: LateVerdict | None = None,
) -> Verdict:
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
            _give_up(critic, future, functools.partial(pool.abandon, future), on_late)
            raise CriticTimeout(f"timeout after {timeout_s}s") from None
    return _checked(critic, out)


async def ajudge_with_timeout(
    critic: Critic,
    ctx: StepContext,
    timeout_s: float | None,
    pool: CriticPool,
    loop: CriticLoop,
    *,
    on_late: LateVerdict | None = None,
) -> Verdict:
    """Await the critic for at most ``timeout_s`` without letting it hold the caller's event loop.

    A native-async critic runs on ``loop`` (the guard's own event loop thread, see :mod:`critic_guard.critic_loop`),
    a sync one in ``pool``; either way the caller only awaits a future, so the deadline holds even for a critic
    that ignores cancellation or blocks. A ``caller_loop`` critic (its async clients are bound to this loop) runs
    as a task here, which the step stops waiting for at the deadline. With no timeout a native-async critic is
    awaited on the caller's loop.
    """
    native = is_native_async(critic)
    if native and timeout_s is None:
        return _checked(critic, await critic.ajudge(ctx))
    if native and timeout_s is not None and runs_on_caller_loop(critic):
        return _checked(critic, await _on_caller_loop(critic, ctx, timeout_s, on_late))
    context = contextvars.copy_context()
    future: Future[Any]
    if native:
        awaitable = critic.ajudge(ctx)
        coro = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        call = loop.submit(coro, context)
        future, cancel = call.future, call.cancel
    else:
        future = pool.submit(context.run, critic.judge, ctx)
        cancel = functools.partial(pool.abandon, future)
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            out = await asyncio.wrap_future(future)
    except TimeoutError:
        if not deadline.expired():  # the critic's own TimeoutError
            raise
        _give_up(critic, future, cancel, on_late)
        if native:
            loop.check_lag()
        raise CriticTimeout(f"timeout after {timeout_s}s") from None
    except asyncio.CancelledError:  # the caller was cancelled: the critic is abandoned with it
        _give_up(critic, future, cancel, None)
        raise
    return _checked(critic, out)


async def _on_caller_loop(critic: Critic, ctx: StepContext, timeout_s: float, on_late: LateVerdict | None) -> Any:
    """A ``caller_loop`` critic as a task on this loop: the step waits for it until the deadline, never longer (the
    task is cancelled and left to finish, so swallowing the cancellation cannot hold the step)."""
    task = asyncio.ensure_future(critic.ajudge(ctx))
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout_s)
    except asyncio.CancelledError:
        _give_up(critic, task, task.cancel, None)
        raise
    if not done:
        _give_up(critic, task, task.cancel, on_late)
        raise CriticTimeout(f"timeout after {timeout_s}s")
    if task.cancelled():
        raise CriticCancelled("the critic's task was cancelled")
    return task.result()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def describe_error(exc: BaseException) -> str:
    """A short, single-line reason for the store and traces, e.g. ``"ValueError: bad json"``."""
    if isinstance(exc, CriticTimeout | CriticPoolExhausted):
        text = str(exc)
    else:
        message = " ".join(str(exc).split())
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."
