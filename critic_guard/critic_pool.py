"""Running critics safely: a timeout on every call, and a bounded pool that hung critics cannot exhaust silently.

Why not ``concurrent.futures.ThreadPoolExecutor``: its workers are joined at interpreter exit, so one critic stuck
in a network call would keep the process alive forever. :class:`CriticPool` uses daemon threads instead.

Bounded behaviour with hung critics: a call whose caller timed out but which is still running counts as *hung*.
Hung calls keep their worker until they return. When every worker is hung, :meth:`CriticPool.submit` raises
:class:`CriticPoolExhausted` at once (the guard fails open with "critic pool exhausted") instead of queueing work
that no thread will ever pick up; a call already queued then gives up the same way.

A full pool loses no verdict: a call that waits for a busy worker waits without a deadline, and its timeout starts
when a worker starts it (``critic_timeout_s`` bounds the critic, not the queue). Such a call is *queued*: the guard
counts it (``GuardCounters.critic_queued``) and warns once that ``critic_workers`` is too small for the load.

The pool takes no lock on the caller's side (an event loop calls :meth:`CriticPool.submit`; blockbuster flags a
contended lock there): work and idle workers meet in ``queue.SimpleQueue`` (C, lock-free for Python), hung calls are
a set, and a thread is started only by the caller that wins a non-blocking try of the start lock.

A critic that does no I/O (``inline = True``, e.g. :class:`~critic_guard.critics.ConstantCritic`) runs in the
caller's thread without the hop to a worker: the hop costs more than such a critic (docs/critics-and-policy.md).

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
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from critic_guard.critic_loop import CriticCancelled, CriticLoop
from critic_guard.critics import Critic, MalformedVerdictError, is_inline, is_native_async, runs_on_caller_loop
from critic_guard.types import StepContext, Verdict

__all__ = [
    "CriticCall",
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


class CriticCall(Future[T]):
    """A submitted call: ``queued`` when no worker was free for it, ``started_at`` (monotonic) once one started it."""

    queued = False
    started_at: float | None = None


_WorkItem = tuple[CriticCall[Any], Callable[..., Any], tuple[Any, ...]]


class CriticPool:
    """At most ``max_workers`` daemon threads, started on demand, for sync critic calls."""

    def __init__(self, max_workers: int = 8, *, name: str = "critic-guard") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle: queue.SimpleQueue[None] = queue.SimpleQueue()  # one token per worker waiting for work
        self._starting = threading.Lock()  # only ever tried without blocking
        self._threads: list[threading.Thread] = []
        self._hung: set[Future[Any]] = set()
        self._closed = False

    @property
    def hung(self) -> int:
        """Calls abandoned after a timeout that are still running."""
        return len(self._hung)

    @property
    def exhausted(self) -> bool:
        """Every worker is stuck in a timed-out call: nothing queued will start until one returns."""
        return len(self._hung) >= self.max_workers

    def submit(self, fn: Callable[..., T], *args: Any) -> CriticCall[T]:
        """Queue ``fn(*args)`` for a worker; ``queued`` on the result when every worker was busy."""
        if self._closed:
            raise RuntimeError("critic pool is shut down")
        if self.exhausted:
            raise CriticPoolExhausted(
                f"critic pool exhausted: all {self.max_workers} workers are stuck in timed-out critic calls"
            )
        future: CriticCall[T] = CriticCall()
        self._queue.put((future, fn, args))
        try:
            self._idle.get_nowait()  # a waiting worker takes it
        except queue.Empty:
            if not self._start_worker():
                future.queued = True  # every worker is busy: it waits for one (its timeout has not started)
        return future

    def _start_worker(self) -> bool:
        """Start a worker if there is room (False when the pool is full, or another caller is starting one)."""
        if len(self._threads) >= self.max_workers or not self._starting.acquire(blocking=False):
            return False
        try:
            if len(self._threads) >= self.max_workers:
                return False
            thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
            return True
        finally:
            self._starting.release()

    def abandon(self, future: Future[Any]) -> None:
        """The caller gave up on ``future``: cancel it if it has not started, else count it hung until it returns."""
        if future.cancel():
            return
        self._hung.add(future)
        future.add_done_callback(self._hung.discard)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                future.started_at = time.monotonic()
                try:
                    result = fn(*args)
                except asyncio.CancelledError:  # the critic's own: an error, not a cancellation of the caller
                    future.set_exception(CriticCancelled("the critic raised CancelledError"))
                except BaseException as exc:  # delivered to the waiting caller, who decides
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn, args
            self._idle.put(None)

    def shutdown(self) -> None:
        """Stop idle workers; hung ones are daemons and die with the process. Idempotent."""
        with self._starting:
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
    on_queued: Callable[[], object] | None = None,
) -> Verdict:
    """Call ``critic.judge`` in ``pool`` and wait at most ``timeout_s`` from the moment a worker starts it; inline
    when the timeout is None or the critic is ``inline``. ``on_queued`` is called when the call had to wait for a
    worker (the pool is saturated)."""
    if timeout_s is None or is_inline(critic):
        return _checked(critic, critic.judge(ctx))
    # In the caller's context (the current span, so the critic's own LLM spans nest under the step).
    future = pool.submit(contextvars.copy_context().run, critic.judge, ctx)
    if future.queued and on_queued is not None:
        on_queued()
    while True:
        try:
            out = future.result(timeout=_left(future, timeout_s))
            break
        except TimeoutError:
            if future.done():  # the critic's own TimeoutError, or it finished right at the deadline
                out = future.result()
                break
            if future.started_at is None:  # still waiting for a worker: that time does not count
                _raise_if_exhausted(pool, future)
                continue
            if _left(future, timeout_s) > 0:
                continue
            _give_up(critic, future, functools.partial(pool.abandon, future), on_late)
            raise CriticTimeout(f"timeout after {timeout_s}s") from None
    return _checked(critic, out)


def _left(future: CriticCall[Any], timeout_s: float) -> float:
    """Seconds left of the call's timeout (all of it while it waits for a worker)."""
    started = future.started_at
    return timeout_s if started is None else max(0.0, started + timeout_s - time.monotonic())


def _raise_if_exhausted(pool: CriticPool, future: CriticCall[Any]) -> None:
    """A queued call behind workers that are all hung would never start: give up on it (fail open)."""
    if pool.exhausted and future.cancel():
        raise CriticPoolExhausted(
            f"critic pool exhausted: all {pool.max_workers} workers are stuck in timed-out critic calls"
        )


async def ajudge_with_timeout(
    critic: Critic,
    ctx: StepContext,
    timeout_s: float | None,
    pool: CriticPool,
    loop: CriticLoop,
    *,
    on_late: LateVerdict | None = None,
    on_queued: Callable[[], object] | None = None,
) -> Verdict:
    """Await the critic for at most ``timeout_s`` without letting it hold the caller's event loop.

    A native-async critic runs on ``loop`` (the guard's own event loop thread, see :mod:`critic_guard.critic_loop`),
    a sync one in ``pool`` (its timeout starts when a worker starts it); either way the caller only awaits a future,
    so the deadline holds even for a critic that ignores cancellation or blocks. A ``caller_loop`` critic (its async
    clients are bound to this loop) runs as a task here, which the step stops waiting for at the deadline. With no
    timeout a native-async critic is awaited on the caller's loop. An ``inline`` critic (no I/O) is called right
    here: ``judge``, or ``ajudge`` awaited on this loop if it is native async.
    """
    native = is_native_async(critic)
    if is_inline(critic):
        return _checked(critic, await critic.ajudge(ctx) if native else critic.judge(ctx))
    if native and timeout_s is None:
        return _checked(critic, await critic.ajudge(ctx))
    if native and timeout_s is not None and runs_on_caller_loop(critic):
        return _checked(critic, await _on_caller_loop(critic, ctx, timeout_s, on_late))
    if native:  # the critic loop starts it at once: one plain deadline
        awaitable = critic.ajudge(ctx)
        coro = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        on_loop = loop.submit(coro, contextvars.copy_context())
        if timeout_s is None:
            return _checked(critic, await asyncio.wrap_future(on_loop.future))
        return _checked(critic, await _within(critic, on_loop.future, on_loop.cancel, timeout_s, loop, on_late))
    call = pool.submit(contextvars.copy_context().run, critic.judge, ctx)
    if call.queued and on_queued is not None:
        on_queued()
    if timeout_s is None:  # a sync critic without a timeout still runs in the pool: never on the caller's loop
        return _checked(critic, await asyncio.wrap_future(call))
    cancel = functools.partial(pool.abandon, call)
    waiting = asyncio.wrap_future(call)
    try:
        while True:
            done, _ = await asyncio.wait((waiting,), timeout=_left(call, timeout_s))
            if done:
                break
            if call.started_at is None:  # still waiting for a worker: that time does not count
                _raise_if_exhausted(pool, call)
                continue
            if _left(call, timeout_s) > 0:
                continue
            waiting.cancel()
            _give_up(critic, call, cancel, on_late)
            raise CriticTimeout(f"timeout after {timeout_s}s")
    except asyncio.CancelledError:  # the caller was cancelled: the critic is abandoned with it
        waiting.cancel()
        _give_up(critic, call, cancel, None)
        raise
    return _checked(critic, waiting.result())


async def _within(
    critic: Critic,
    future: Future[Any],
    cancel: Callable[[], object],
    timeout_s: float,
    loop: CriticLoop,
    on_late: LateVerdict | None,
) -> Any:
    """Await ``future`` for at most ``timeout_s``; at the deadline give it up (a late answer goes to ``on_late``)."""
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await asyncio.wrap_future(future)
    except TimeoutError:
        if not deadline.expired():  # the critic's own TimeoutError
            raise
        _give_up(critic, future, cancel, on_late)
        loop.check_lag()
        raise CriticTimeout(f"timeout after {timeout_s}s") from None
    except asyncio.CancelledError:  # the caller was cancelled: the critic is abandoned with it
        _give_up(critic, future, cancel, None)
        raise


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
