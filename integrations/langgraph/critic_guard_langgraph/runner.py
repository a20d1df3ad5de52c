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
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from critic_guard.guard import CriticGuard
from critic_guard_langgraph.fork import DEFAULT_WAIT_S, aclone_checkpoint, clone_checkpoint
from critic_guard_langgraph.shadow import BRANCH_KEY, ShadowBranch, ShadowIncomplete

__all__ = ["ForkPoint", "Judge", "ShadowRunner"]

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
        graph: the compiled graph (``create_agent(...)``), with a checkpointer.
        guard: the guard whose pairs the branches complete.
        judge: ``(task, final_state) -> bool | Awaitable[bool]``; without one, outcomes come later through
            ``guard.record_outcome(run_id, success)``.
        fork_context: ``context -> context``: the branch's own environment for tools declared ``forked``.
        max_workers: threads for sync branches.
        wait_s: how long a clone waits for the fork checkpoint to be persisted.
    """

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        guard: CriticGuard,
        *,
        judge: Judge | None = None,
        fork_context: Callable[[Any], Any] | None = None,
        max_workers: int = 2,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        saver = graph.checkpointer
        if not isinstance(saver, BaseCheckpointSaver):
            raise ValueError(
                "shadow branches fork from checkpoints: compile the graph with a checkpointer, e.g. "
                "create_agent(..., checkpointer=InMemorySaver())"
            )
        self.graph = graph
        self.saver: BaseCheckpointSaver[Any] = saver
        self.guard = guard
        self.judge = judge
        self.fork_context = fork_context
        self.wait_s = wait_s
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="critic-guard-shadow")
        self._lock = threading.Lock()
        self._futures: dict[Future[bool | None], str] = {}  # -> the production thread it forked from
        self._tasks: dict[asyncio.Task[bool | None], str] = {}

    # -- submitting -----------------------------------------------------------------------------------------

    def submit(
        self, branch: ShadowBranch, fork: ForkPoint, *, task: Mapping[str, Any], context: Any = None
    ) -> Future[bool | None]:
        """Run the branch on the thread pool; the future's result is its outcome (None: no judge, or excluded).

        The branch's context is forked here, in the caller's thread, at the fork point: the production run goes on
        changing its environment as soon as this returns.
        """
        prepared = self._prepared(branch, context)
        excluded: Future[bool | None] = Future()
        excluded.set_result(None)
        if prepared is None:
            return excluded
        try:
            future = self._pool.submit(self._run, *prepared, fork, task)
        except RuntimeError as exc:  # the runner was closed: the branch cannot run; its pair is excluded, not lost
            self._exclude(branch, exc)
            return excluded
        with self._lock:
            self._futures[future] = fork.thread_id
        future.add_done_callback(self._forget)
        return future

    def asubmit(
        self, branch: ShadowBranch, fork: ForkPoint, *, task: Mapping[str, Any], context: Any = None
    ) -> asyncio.Task[bool | None]:
        """Run the branch as an asyncio task on the running loop (its context forked now, as in :meth:`submit`)."""
        prepared = self._prepared(branch, context)
        work = _excluded() if prepared is None else self._arun(*prepared, fork, task)
        created = asyncio.get_running_loop().create_task(work)
        self._tasks[created] = fork.thread_id
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
        while pending := [t for t, thread in self._tasks.items() if thread_id is None or thread == thread_id]:
            await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        """Wait for the sync branches and stop the thread pool."""
        self._pool.shutdown(wait=True)

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
        return None if prepared is None else self._run(*prepared, fork, task)

    def _run(self, branch: ShadowBranch, context: Any, fork: ForkPoint, task: Mapping[str, Any]) -> bool | None:
        try:
            clone_checkpoint(
                self.saver,
                fork.source_config(),
                shadow_thread_id(fork, branch),
                skip_task_ids={fork.task_id},
                wait_s=self.wait_s,
            )
            final = self.graph.invoke(None, self._config(branch, fork), context=context)
            branch.stop.check()  # a stop another middleware swallowed still excludes the pair
            if self.judge is None:
                self.guard.end_run(branch.run_id, status="completed")
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
        return None if prepared is None else await self._arun(*prepared, fork, task)

    async def _arun(self, branch: ShadowBranch, context: Any, fork: ForkPoint, task: Mapping[str, Any]) -> bool | None:
        try:
            await aclone_checkpoint(
                self.saver,
                fork.source_config(),
                shadow_thread_id(fork, branch),
                skip_task_ids={fork.task_id},
                wait_s=self.wait_s,
            )
            final = await self.graph.ainvoke(None, self._config(branch, fork), context=context)
            branch.stop.check()  # a stop another middleware swallowed still excludes the pair
            if self.judge is None:
                self.guard.end_run(branch.run_id, status="completed")
                return None
            verdict = self.judge(task, final)
            ok = await verdict if inspect.isawaitable(verdict) else verdict
            return self._record(branch, ok)
        except Exception as exc:
            self._exclude(branch, branch.stop.error or exc)  # the gate's stop, whatever became of its exception
            return None

    def _record(self, branch: ShadowBranch, ok: object) -> bool:
        if not isinstance(ok, bool):
            raise TypeError(f"the judge must return a bool, got {type(ok).__name__}")
        self.guard.end_run(branch.run_id, status="completed", success=ok)  # the branch's graph left it open
        return ok

    def _exclude(self, branch: ShadowBranch, exc: Exception) -> None:
        """Mark the pair incomplete and end the branch's run (never raise: this runs beside production).

        The two are independent: the pair is excluded even when ending the run fails (e.g. the run's own record
        was lost), and a store that cannot take either now gets it later (the guard queues both, in order).
        """
        stopped = isinstance(exc, ShadowIncomplete)
        reason = exc.reason if isinstance(exc, ShadowIncomplete) else f"branch failed: {self.guard.error_text(exc)}"
        if not stopped:
            logger.warning(
                "critic-guard: shadow branch %s failed; pair %s excluded", branch.run_id, branch.pair_id, exc_info=exc
            )
        try:
            self.guard.mark_incomplete(branch.pair_id, reason)
        except Exception:
            logger.exception("critic-guard: could not mark pair %s incomplete", branch.pair_id)
        try:
            self.guard.end_run(branch.run_id, status="incomplete" if stopped else "failed")
        except Exception:
            logger.exception("critic-guard: could not end the run of shadow branch %s", branch.run_id)


def shadow_thread_id(fork: ForkPoint, branch: ShadowBranch) -> str:
    """The branch's thread: derived from the production thread and the branch run id (unique, recognisable)."""
    return f"{fork.thread_id}~shadow~{branch.run_id}"


async def _awaited(value: Awaitable[bool]) -> bool:
    return await value


async def _excluded() -> None:
    """The outcome of a branch excluded before it started."""
    return None
