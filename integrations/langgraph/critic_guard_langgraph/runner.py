"""``ShadowRunner``: run a shadow branch in the background, judge it, and complete (or exclude) its pair.

A branch is: clone the fork-point checkpoint into a new thread (:mod:`critic_guard_langgraph.fork`), resume the
graph there with ``None`` input and a config naming the branch (:class:`~critic_guard_langgraph.shadow
.ShadowBranch`), judge the final state, ``guard.end_run(branch.run_id, success=ok)`` (the branch's own graph leaves
its run open for this, so the outcome lands on the run's span). Branches run off the user's
path so that user-facing latency does not grow: sync submissions go to a small thread pool, async ones become
asyncio tasks. :meth:`ShadowRunner.wait` / :meth:`ShadowRunner.drain` let a pilot or a test wait for them: all of
them, or only those forked from one production thread (a pilot running many tasks at once awaits each task's own
branches, not everyone's).

A branch never raises into the production run. A branch stopped by the tool gate, or failing in any other way,
marks its pair ``incomplete`` with the reason (and ends its run with status ``incomplete`` / ``failed``). The gate's
stop is read from the branch itself (:class:`~critic_guard_langgraph.shadow.BranchStop`) when the branch ends, so it
counts even when a retry or fallback middleware turned its exception into a tool message and the branch ran on.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from critic_guard.guard import CriticGuard
from critic_guard_langgraph.fork import DEFAULT_WAIT_S, aclone_checkpoint, clone_checkpoint
from critic_guard_langgraph.shadow import BRANCH_KEY, ShadowBranch, ShadowIncomplete

__all__ = ["ForkPoint", "Judge", "ShadowRunner", "call_judge"]

logger = logging.getLogger("critic_guard_langgraph")

Judge = Callable[[Mapping[str, Any], Mapping[str, Any]], "bool | Awaitable[bool]"]
"""``judge(task, final_state) -> bool`` (or an awaitable of it): whether a run succeeded."""


@dataclass(frozen=True, slots=True)
class ForkPoint:
    """Where a branch starts: the production thread's checkpoint its model node runs from at the flagged step, and
    the id of that model task (its writes are production's step and are not copied: the branch redoes the step)."""

    thread_id: str
    checkpoint_id: str
    task_id: str
    recursion_limit: int | None = None  # the production run's, so the branch gets the same budget

    def source_config(self) -> RunnableConfig:
        return {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": "", "checkpoint_id": self.checkpoint_id}}


class ShadowRunner:
    """Runs shadow branches of one compiled graph in the background.

    Args:
        graph: the compiled graph (``create_agent(...)``), with a checkpointer; or None when every submission
            names the graph to resume (``graph=``: the running graph, see :mod:`.running_graph`).
        guard: the guard whose pairs the branches complete.
        judge: ``(task, final_state) -> bool | Awaitable[bool]``; without one, outcomes come later through
            ``guard.record_outcome(run_id, success)``.
        fork_context: ``context -> context``: the branch's own environment for tools declared ``forked``.
        max_workers: threads for sync branches.
        wait_s: how long a clone waits for the fork checkpoint to be persisted.
    """

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any] | None,
        guard: CriticGuard,
        *,
        judge: Judge | None = None,
        fork_context: Callable[[Any], Any] | None = None,
        max_workers: int = 2,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        if graph is not None:
            _saver_of(graph)
        self.graph = graph
        self.guard = guard
        self.judge = judge
        self.fork_context = fork_context
        self.wait_s = wait_s
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="critic-guard-shadow")
        self._lock = threading.Lock()
        self._futures: dict[Future[bool | None], str] = {}  # -> the production thread it forked from
        self._tasks: dict[asyncio.Task[bool | None], tuple[str, ShadowBranch]] = {}  # -> (thread, branch)

    # -- submitting -----------------------------------------------------------------------------------------

    def submit(
        self,
        branch: ShadowBranch,
        fork: ForkPoint,
        *,
        task: Mapping[str, Any],
        context: Any = None,
        graph: Pregel[Any, Any, Any, Any] | None = None,
    ) -> Future[bool | None]:
        """Run the branch on the thread pool; the future's result is its outcome (None: no judge, or excluded).

        The branch's context is forked here, in the caller's thread, at the fork point: the production run goes on
        changing its environment as soon as this returns. ``graph``: the graph to resume (default: the runner's).
        """
        prepared = self._prepared(branch, context)
        excluded: Future[bool | None] = Future()
        excluded.set_result(None)
        if prepared is None:
            return excluded
        try:
            future = self._pool.submit(self._run, *prepared, fork, task, self._graph(graph))
        except RuntimeError as exc:  # the runner was closed: the branch cannot run; its pair is excluded, not lost
            self._exclude(branch, exc)
            return excluded
        with self._lock:
            self._futures[future] = fork.thread_id
        future.add_done_callback(self._forget)
        return future

    def asubmit(
        self,
        branch: ShadowBranch,
        fork: ForkPoint,
        *,
        task: Mapping[str, Any],
        context: Any = None,
        graph: Pregel[Any, Any, Any, Any] | None = None,
    ) -> asyncio.Task[bool | None]:
        """Run the branch as an asyncio task on the running loop (its context forked now, as in :meth:`submit`).

        The task runs outside the production run's LangChain context (its callbacks, e.g. a stream handler of
        ``stream_mode="messages"``, and its config): nothing of the branch reaches the production run's client.
        """
        prepared = self._prepared(branch, context)
        work = _excluded() if prepared is None else self._arun(*prepared, fork, task, self._graph(graph))
        created = asyncio.get_running_loop().create_task(work, context=_outside_the_run())
        self._tasks[created] = (fork.thread_id, branch)
        created.add_done_callback(self._forget_task)
        return created

    def _forget(self, future: Future[bool | None]) -> None:
        with self._lock:
            self._futures.pop(future, None)

    def _forget_task(self, task: asyncio.Task[bool | None]) -> None:
        self._tasks.pop(task, None)

    def wait(self, timeout: float | None = None, *, thread_id: str | None = None) -> bool:
        """Wait for the sync branches submitted so far (only those forked from ``thread_id``, if given); True if
        all finished within ``timeout``."""
        with self._lock:
            pending = {f for f, t in self._futures.items() if thread_id is None or t == thread_id}
        _, not_done = wait_futures(pending, timeout)
        return not not_done

    async def drain(self, thread_id: str | None = None) -> None:
        """Await every async branch (only those forked from ``thread_id``, if given), including branches
        submitted while draining."""
        while pending := [t for t, (thread, _) in self._tasks.items() if thread_id is None or thread == thread_id]:
            await asyncio.gather(*pending, return_exceptions=True)

    def close(self, timeout: float | None = None) -> bool:
        """Finish every branch, sync and async, and stop the thread pool; True if all finished within ``timeout``.

        Callable from sync code: async branches running on an event loop in another thread are awaited there; those
        whose loop has stopped can never finish, and their pairs are excluded with the reason (never left open).
        From inside a running event loop use :meth:`aclose` (blocking here would stall the branches' own loop).
        """
        finished = self._finish_async(timeout)
        finished &= self.wait(timeout)
        self._pool.shutdown(wait=True)
        return finished

    async def aclose(self) -> None:
        """Async :meth:`close`: await the async branches, then wait for the sync ones off the event loop."""
        await self.drain()
        await asyncio.to_thread(self.close)

    def _finish_async(self, timeout: float | None) -> bool:
        """Wait for the async branches from sync code (see :meth:`close`)."""
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        finished = True
        for loop in {task.get_loop() for task in list(self._tasks)}:
            pending = [task for task in list(self._tasks) if task.get_loop() is loop and not task.done()]
            if not pending:
                continue
            if loop is here:
                raise RuntimeError("ShadowRunner.close() inside the branches' event loop: await aclose() instead")
            if loop.is_running():
                done = asyncio.run_coroutine_threadsafe(self.drain(), loop)
                try:
                    done.result(timeout)
                except TimeoutError:
                    finished = False
                continue
            for task in pending:  # their loop stopped: they will never run again
                _, branch = self._tasks.pop(task)
                self._mark(branch, "branch abandoned: its event loop stopped before it finished", "failed")
        return finished

    # -- running --------------------------------------------------------------------------------------------

    def _prepared(self, branch: ShadowBranch, context: Any) -> tuple[ShadowBranch, Any] | None:
        """The branch and its own context (``fork_context``), or None when forking the context failed (the pair is
        excluded)."""
        if self.fork_context is None:
            return branch, context
        try:
            return replace(branch, context_forked=True), self.fork_context(context)
        except Exception as exc:
            self._exclude(branch, exc)
            return None

    def _config(self, branch: ShadowBranch, fork: ForkPoint) -> RunnableConfig:
        config: RunnableConfig = {
            "configurable": {"thread_id": shadow_thread_id(fork, branch), BRANCH_KEY: branch.to_config()}
        }
        if fork.recursion_limit is not None:
            config["recursion_limit"] = fork.recursion_limit
        return config

    def run(
        self, branch: ShadowBranch, fork: ForkPoint, *, task: Mapping[str, Any], context: Any = None
    ) -> bool | None:
        """Run one branch to the end, here and now (what :meth:`submit` does on the pool). Never raises."""
        prepared = self._prepared(branch, context)
        return None if prepared is None else self._run(*prepared, fork, task, self._graph(None))

    def _run(
        self,
        branch: ShadowBranch,
        context: Any,
        fork: ForkPoint,
        task: Mapping[str, Any],
        graph: Pregel[Any, Any, Any, Any],
    ) -> bool | None:
        try:
            clone_checkpoint(
                _saver_of(graph),
                fork.source_config(),
                shadow_thread_id(fork, branch),
                skip_task_ids={fork.task_id},
                wait_s=self.wait_s,
            )
            final = graph.invoke(None, self._config(branch, fork), context=context)
            branch.stop.check()  # a stop another middleware swallowed still excludes the pair
            if self.judge is None:
                self.guard.end_run(branch.run_id, status="completed", background=True)
                return None
            verdict = self.judge(task, final)
            ok = asyncio.run(_awaited(verdict)) if inspect.isawaitable(verdict) else verdict
            return self._record(branch, ok)
        except Exception as exc:
            self._exclude(branch, branch.stop.error or exc)  # the gate's stop, whatever became of its exception
            return None

    async def arun(
        self, branch: ShadowBranch, fork: ForkPoint, *, task: Mapping[str, Any], context: Any = None
    ) -> bool | None:
        """Async :meth:`run`."""
        prepared = self._prepared(branch, context)
        return None if prepared is None else await self._arun(*prepared, fork, task, self._graph(None))

    async def _arun(
        self,
        branch: ShadowBranch,
        context: Any,
        fork: ForkPoint,
        task: Mapping[str, Any],
        graph: Pregel[Any, Any, Any, Any],
    ) -> bool | None:
        try:
            await aclone_checkpoint(
                _saver_of(graph),
                fork.source_config(),
                shadow_thread_id(fork, branch),
                skip_task_ids={fork.task_id},
                wait_s=self.wait_s,
            )
            final = await graph.ainvoke(None, self._config(branch, fork), context=context)
            branch.stop.check()  # a stop another middleware swallowed still excludes the pair
            if self.judge is None:
                self.guard.end_run(branch.run_id, status="completed", background=True)
                return None
            return self._record(branch, await call_judge(self.judge, task, final))
        except asyncio.CancelledError:  # e.g. asyncio.run() ending before the branch: excluded, not lost
            self._mark(branch, "branch cancelled before it finished", "failed")
            raise
        except Exception as exc:
            self._exclude(branch, branch.stop.error or exc)  # the gate's stop, whatever became of its exception
            return None

    def _record(self, branch: ShadowBranch, ok: object) -> bool:
        if not isinstance(ok, bool):
            raise TypeError(f"the judge must return a bool, got {type(ok).__name__}")
        self.guard.end_run(
            branch.run_id, status="completed", success=ok, background=True
        )  # the branch's graph left it open
        return ok

    def _exclude(self, branch: ShadowBranch, exc: Exception) -> None:
        """Mark the pair incomplete and end the branch's run (never raise: this runs beside production)."""
        stopped = isinstance(exc, ShadowIncomplete)
        reason = exc.reason if isinstance(exc, ShadowIncomplete) else f"branch failed: {self.guard.error_text(exc)}"
        if not stopped:
            logger.warning(
                "critic-guard: shadow branch %s failed; pair %s excluded", branch.run_id, branch.pair_id, exc_info=exc
            )
        self._mark(branch, reason, "incomplete" if stopped else "failed")

    def _mark(self, branch: ShadowBranch, reason: str, status: str) -> None:
        """Exclude the branch's pair with ``reason`` and end its run with ``status``.

        The two are independent: the pair is excluded even when ending the run fails (e.g. the run's own record
        was lost), and a store that cannot take either now gets it later (the guard queues both, in order).
        """
        try:
            self.guard.mark_incomplete(branch.pair_id, reason, background=True)
        except Exception:
            logger.exception("critic-guard: could not mark pair %s incomplete", branch.pair_id)
        try:
            self.guard.end_run(branch.run_id, status=status, background=True)
        except Exception:
            logger.exception("critic-guard: could not end the run of shadow branch %s", branch.run_id)

    def _graph(self, graph: Pregel[Any, Any, Any, Any] | None) -> Pregel[Any, Any, Any, Any]:
        """The graph a branch resumes: the one given for it, else the runner's."""
        chosen = graph if graph is not None else self.graph
        if chosen is None:
            raise ValueError("ShadowRunner(None, ...) runs only branches submitted with graph=")
        return chosen


async def call_judge(judge: Judge, task: Mapping[str, Any], state: Mapping[str, Any]) -> object:
    """The judge's answer without blocking the event loop: an ``async def`` judge is awaited here, any other runs
    in a worker thread (in this context), and an awaitable it returns is awaited here."""
    if inspect.iscoroutinefunction(judge) or inspect.iscoroutinefunction(type(judge).__call__):
        answer = judge(task, state)
    else:
        answer = await asyncio.to_thread(judge, task, state)
    return await answer if inspect.isawaitable(answer) else answer


def shadow_thread_id(fork: ForkPoint, branch: ShadowBranch) -> str:
    """The branch's thread: derived from the production thread and the branch run id (unique, recognisable)."""
    return f"{fork.thread_id}~shadow~{branch.run_id}"


async def _awaited(value: Awaitable[bool]) -> bool:
    return await value


def _saver_of(graph: Pregel[Any, Any, Any, Any]) -> BaseCheckpointSaver[Any]:
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        raise ValueError(
            "shadow branches fork from checkpoints: compile the graph with a checkpointer, e.g. "
            "create_agent(..., checkpointer=InMemorySaver())"
        )
    return saver


def _outside_the_run() -> contextvars.Context:
    """A copy of the current context without LangChain's runnable config (see :meth:`ShadowRunner.asubmit`)."""
    context = contextvars.copy_context()
    context.run(var_child_runnable_config.set, None)
    return context


async def _excluded() -> None:
    """The outcome of a branch excluded before it started."""
    return None
