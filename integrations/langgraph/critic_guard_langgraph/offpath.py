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

Back-pressure, never a silent drop: at most ``max_pending`` jobs wait; a step that finds the queue full waits for a
free place (sync: the thread waits; async: the task awaits). A job that raises is logged and counted
(:attr:`OffPathJudging.failures`). ``drain()`` / ``adrain()`` wait for every job; what the process loses when it dies
before draining: the background verdicts of its runs (their runs stay open in the store, with unjudged steps).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
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
        self._pending: set[Future[None]] = set()
        self._alast: dict[str, asyncio.Task[None]] = {}  # async: the latest job of each run
        self._tasks: set[asyncio.Task[None]] = set()
        self._aplaces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self.failures = 0  # jobs that raised (logged): their verdict, row or fork was not made

    # -- sync ---------------------------------------------------------------------------------------------------

    def submit(self, run_id: str, job: Callable[[], None]) -> None:
        """Queue ``job`` after the run's earlier jobs; wait for a place while ``max_pending`` jobs are queued."""
        self._places.acquire()
        with self._lock:
            before = self._last.get(run_id)
            future = self._pool.submit(self._run, before, job)
            self._last[run_id] = future
            self._pending.add(future)
        future.add_done_callback(lambda done: self._finished(run_id, done))

    def _run(self, before: Future[None] | None, job: Callable[[], None]) -> None:
        # the pool's queue is FIFO: the run's previous job was taken by a worker before this one, so this wait ends
        if before is not None:
            before.result()
        self._guarded(job)

    def _finished(self, run_id: str, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
            if self._last.get(run_id) is future:
                del self._last[run_id]
        self._places.release()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for every queued job from sync code; True if all finished within ``timeout``.

        Async jobs on an event loop running in another thread are awaited there (as ``guard.close()`` from a worker
        thread of a service does); those whose loop has stopped can never run, and are counted as failures.
        """
        finished = True
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop in {task.get_loop() for task in tuple(self._tasks)}:
            if loop is here:  # waiting here would stall the loop the jobs need
                raise RuntimeError("close() inside the event loop of background verdicts: await aclose() instead")
            if loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(self._await_loop(), loop).result(timeout)
                except TimeoutError:
                    finished = False
            else:
                stranded = [task for task in tuple(self._tasks) if task.get_loop() is loop and not task.done()]
                with self._lock:
                    self.failures += len(stranded)
                logger.error("critic-guard: %d background verdicts on a stopped event loop are lost", len(stranded))
        with self._lock:
            pending = list(self._pending)
        _, not_done = wait_all(pending, timeout)
        return finished and not not_done

    async def _await_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while pending := [task for task in tuple(self._tasks) if task.get_loop() is loop]:
            await asyncio.wait(pending)

    def close(self, timeout: float | None = None) -> bool:
        """Drain, then stop the threads."""
        finished = self.drain(timeout)
        self._pool.shutdown(wait=finished)
        return finished

    # -- async --------------------------------------------------------------------------------------------------

    async def asubmit(self, run_id: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Async :meth:`submit`: the job is a task on this loop; the step awaits a place when the queue is full."""
        loop = asyncio.get_running_loop()
        places = self._aplaces.get(loop)
        if places is None:
            places = self._aplaces[loop] = asyncio.Semaphore(self._max_pending)
        await places.acquire()
        before = self._alast.get(run_id)
        task = loop.create_task(self._arun(before, job, places))
        self._alast[run_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._afinished(run_id, done))

    async def _arun(
        self,
        before: asyncio.Task[None] | None,
        job: Callable[[], Coroutine[Any, Any, None]],
        places: asyncio.Semaphore,
    ) -> None:
        try:
            if before is not None:
                await asyncio.wait([before])
            try:
                await job()
            except Exception:
                self._failed()
        finally:
            places.release()

    def _afinished(self, run_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._alast.get(run_id) is task:
            del self._alast[run_id]

    async def adrain(self) -> None:
        """Await every async job of this loop, and the sync ones off the loop."""
        await self._await_loop()
        await asyncio.to_thread(self.drain)

    # -- failures -----------------------------------------------------------------------------------------------

    def _guarded(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            self._failed()

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
        logger.exception("critic-guard: a background verdict or fork failed; counted (offpath failures)")
