"""Judging off the user's path: a step's verdict, its row and any fork follow in the background.

Where the verdict cannot change what the user gets (mode ``observe``; a pilot or ``auto`` serving an arm the guard
does not act on), the production step goes on at once with the model's proposal, and the work the middleware would
have done on the path (the critic call, the step row, the first-flag fork from the checkpoint the model node ran
from) is queued here with the same :class:`~critic_guard.types.StepContext` and proposal (docs/pilot-design.md,
"Judging off the user's path").

Order. A run's jobs run one after another, in the order its steps were taken (a chain per run id): the first flag
is the first flagged step whatever the critic's latency, so a run forks at the same step as on the path, and its end
(the concordant pair of a run never flagged, ``end_run``) comes after its last verdict. Different runs are judged in
parallel.

Back-pressure, never a silent drop: at most ``max_pending`` jobs wait (``GuardConfig.background_queue``); a step
that finds the queue full waits for a free place (sync: the thread waits; async: the task awaits). A job that raises
is logged and counted (:attr:`OffPathJudging.failures`), and its run is remembered (:meth:`OffPathJudging.failed`)
so that the middleware can exclude the pair it would bias. Jobs carry the thread they came from: ``wait(thread_id=)``
/ ``adrain(thread_id=)`` wait for one conversation's jobs (a pilot task's), ``close()`` for all. What the process
loses when it dies before draining: the background verdicts of its runs (their runs stay open in the store, with
unjudged steps).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from typing import Any

from critic_guard_langgraph._runs import logger

__all__ = ["OffPathJudging"]


class OffPathJudging:
    """Bounded background queues, one chain of jobs per run: threads for sync agents, tasks for async ones."""

    def __init__(self, *, workers: int = 8, max_pending: int = 1024) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="critic-guard-offpath")
        self._places = threading.BoundedSemaphore(max_pending)
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._last: dict[str, Future[None]] = {}  # sync: the latest job of each run
        self._pending: dict[Future[None], str | None] = {}  # sync jobs in flight -> their thread
        self._alast: dict[str, asyncio.Task[None]] = {}  # async: the latest job of each run
        self._tasks: dict[asyncio.Task[None], str | None] = {}  # async jobs in flight -> their thread
        self._aplaces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._unstarted: dict[str, deque[_Queued]] = {}  # async jobs not started yet, per run, in order
        self._failed_runs: set[str] = set()
        self.failures = 0  # jobs that raised (logged): their verdict, row or fork was not made

    def failed(self, run_id: str) -> bool:
        """Whether a background job of this run raised (its verdict, row or fork was not made)."""
        with self._lock:
            return run_id in self._failed_runs

    def forget(self, run_id: str) -> None:
        """The run has ended and its failure was dealt with: stop remembering it."""
        with self._lock:
            self._failed_runs.discard(run_id)

    # -- sync ---------------------------------------------------------------------------------------------------

    def submit(self, run_id: str, job: Callable[[], None], *, thread_id: str | None = None) -> None:
        """Queue ``job`` after the run's earlier jobs; wait for a place while ``max_pending`` jobs are queued."""
        self._places.acquire()
        self._enqueue(run_id, job, thread_id, holds_place=True)

    def _enqueue(self, run_id: str, job: Callable[[], None], thread_id: str | None, *, holds_place: bool) -> None:
        with self._lock:
            before = self._last.get(run_id)
            future = self._pool.submit(self._run, run_id, before, job)
            self._last[run_id] = future
            self._pending[future] = thread_id
        future.add_done_callback(lambda done: self._finished(run_id, done, holds_place))

    def _run(self, run_id: str, before: Future[None] | None, job: Callable[[], None]) -> None:
        # the pool's queue is FIFO: the run's previous job was taken by a worker before this one, so this wait ends
        if before is not None:
            before.result()
        try:
            job()
        except Exception:
            self._failed(run_id)

    def _finished(self, run_id: str, future: Future[None], holds_place: bool) -> None:
        with self._lock:
            self._pending.pop(future, None)
            if self._last.get(run_id) is future:
                del self._last[run_id]
        if holds_place:
            self._places.release()

    def wait(self, timeout: float | None = None, *, thread_id: str | None = None) -> bool:
        """Wait from sync code for the jobs queued so far (only ``thread_id``'s, if given), including jobs they
        queue meanwhile; True if all finished within ``timeout``.

        Async jobs on an event loop running in another thread are awaited there (as ``guard.close()`` from a worker
        thread of a service does); those whose loop has stopped can never run, and are counted as failures.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        finished = True
        for loop in {task.get_loop() for task in self._async_jobs(thread_id)}:
            if loop is here:  # waiting here would stall the loop the jobs need
                raise RuntimeError("close() inside the event loop of background verdicts: await aclose() instead")
            if loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(self._await_loop(thread_id), loop).result(_left(deadline))
                except TimeoutError:
                    finished = False
            else:
                stranded = [t for t in self._async_jobs(thread_id) if t.get_loop() is loop and not t.done()]
                with self._lock:
                    self.failures += len(stranded)
                logger.error("critic-guard: %d background verdicts on a stopped event loop are lost", len(stranded))
        while True:
            with self._lock:
                pending = [f for f, thread in self._pending.items() if thread_id is None or thread == thread_id]
            if not pending:
                return finished
            _, not_done = wait_all(pending, _left(deadline))
            if not_done:
                return False

    def _async_jobs(self, thread_id: str | None) -> list[asyncio.Task[None]]:
        return [task for task, thread in tuple(self._tasks.items()) if thread_id is None or thread == thread_id]

    async def _await_loop(self, thread_id: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        while pending := [task for task in self._async_jobs(thread_id) if task.get_loop() is loop]:
            await asyncio.wait(pending)

    def close(self, timeout: float | None = None) -> bool:
        """Wait for every job, then stop the threads."""
        finished = self.wait(timeout)
        self._pool.shutdown(wait=finished)
        return finished

    # -- async --------------------------------------------------------------------------------------------------

    async def asubmit(
        self,
        run_id: str,
        job: Callable[[], Coroutine[Any, Any, None]],
        *,
        fallback: Callable[[], None],
        thread_id: str | None = None,
    ) -> None:
        """Async :meth:`submit`: the job is a task on this loop; the step awaits a place when the queue is full.

        ``fallback``: the same job for a thread, run instead of ``job`` if this loop ends before the job starts
        (``asyncio.run(agent.ainvoke(...))`` returns while verdicts are queued: its end cancels them), after the
        run's earlier jobs, so a verdict is not lost with its loop.
        """
        loop = asyncio.get_running_loop()
        places = self._aplaces.get(loop)
        if places is None:
            places = self._aplaces[loop] = asyncio.Semaphore(self._max_pending)
        await places.acquire()
        before = self._alast.get(run_id)
        queued = _Queued(fallback, thread_id)
        with self._lock:
            self._unstarted.setdefault(run_id, deque()).append(queued)
        task = loop.create_task(self._arun(run_id, before, job, queued, places))
        self._alast[run_id] = task
        self._tasks[task] = thread_id
        task.add_done_callback(lambda done: self._afinished(run_id, queued, done))

    async def _arun(
        self,
        run_id: str,
        before: asyncio.Task[None] | None,
        job: Callable[[], Coroutine[Any, Any, None]],
        queued: _Queued,
        places: asyncio.Semaphore,
    ) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            if not self._start(run_id, queued):
                return
            try:
                await job()
            except asyncio.CancelledError:
                self._failed(run_id, cut_off=True)
                raise
            except Exception:
                self._failed(run_id)
        finally:
            places.release()

    def _start(self, run_id: str, queued: _Queued) -> bool:
        """Take the job off the run's list of jobs not started; False if a thread has taken it over already."""
        with self._lock:
            if queued.taken:
                return False
            queued.started = True
            waiting = self._unstarted.get(run_id)
            if waiting is not None:
                waiting.remove(queued)
                if not waiting:
                    del self._unstarted[run_id]
            return True

    def _take_over(self, run_id: str) -> None:
        """The run's event loop is ending (it cancels its tasks, some perhaps before their first step): every job
        of the run not started yet runs in a thread instead, all at once and in the run's order (jobs start in
        order, so these are the run's last ones); the thread chain keeps that order."""
        with self._lock:
            waiting = self._unstarted.pop(run_id, deque())
            for queued in waiting:
                queued.taken = True
        for queued in waiting:
            self._enqueue(run_id, queued.fallback, queued.thread_id, holds_place=False)

    def _afinished(self, run_id: str, queued: _Queued, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if self._alast.get(run_id) is task:
            del self._alast[run_id]
        if task.cancelled() and not queued.started:  # its loop is ending (a done callback runs even for a task
            self._take_over(run_id)  # cancelled before its first step, whose coroutine never ran)

    async def adrain(self, thread_id: str | None = None) -> None:
        """Await the async jobs of this loop (only ``thread_id``'s, if given), and the sync ones off the loop."""
        await self._await_loop(thread_id)
        await asyncio.to_thread(self.wait, None, thread_id=thread_id)

    # -- failures -----------------------------------------------------------------------------------------------

    def _failed(self, run_id: str, *, cut_off: bool = False) -> None:
        with self._lock:
            self.failures += 1
            self._failed_runs.add(run_id)
        if cut_off:
            logger.error("critic-guard: a background verdict was cut off by the end of its event loop; counted")
        else:
            logger.exception("critic-guard: a background verdict or fork failed; counted (offpath failures)")


@dataclass
class _Queued:
    """An async job not started yet: what a thread runs instead if its event loop ends first."""

    fallback: Callable[[], None]
    thread_id: str | None
    started: bool = False
    taken: bool = False


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
