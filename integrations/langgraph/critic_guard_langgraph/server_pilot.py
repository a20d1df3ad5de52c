"""A pilot over a deployed agent: every task is one run on LangGraph's Agent Server (``critic-guard pilot
--server URL --assistant ID``).

Why through the server rather than a home-made worker pool: the server already queues runs and spreads them over
its workers and replicas, so a pilot scales the way the deployment does. The topology (docs/pilot.md, "A pilot over
a deployed agent"):

* the deployment's graph holds a ``CriticGuardMiddleware`` in mode ``pilot`` (or ``auto``) with the suite's
  critic, policy and agent name (the same guard key), writing to a store the pilot can read: a PostgreSQL store
  shared by every server replica and the pilot (SQLite only when both run on one machine);
* the pilot (this adapter inside :func:`critic_guard.pilot.run_pilot`) submits each task as a run on a new thread,
  ``concurrency`` at a time, with the task's metadata as the run's context (so the run records the task id and the
  pilot attempt, and a restarted pilot resumes exactly as it does in process);
* the server runs the production run and, at its first flag, the shadow branch (forking through the server's own
  checkpointer), judges both and completes the pair in the shared store; the pilot waits (bounded) until the store
  shows the task's production run ended and its pair closed, then moves on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from critic_guard.at_rest import ATTEMPT_KEY
from critic_guard.guard import CriticGuard
from critic_guard.pilot import PilotTask
from critic_guard.store.base import PairStatus, Store, UnknownPairError
from critic_guard_langgraph.pilot import default_input

__all__ = ["ServerPilot"]

_POLL_S = 0.2


class ServerPilot:
    """A suite's adapter factory that runs each task on a deployed agent (see the module docstring).

    Args:
        url: the Agent Server, e.g. ``http://127.0.0.1:2024``.
        assistant_id: the assistant (or graph id) to run.
        input: task -> the run's input (default: its ``input`` text as the user message).
        api_key: for a deployment that needs one (default: the SDK's environment variables).
        settle_s: how long to wait, after a task's run returned, for the server to record its production run and
            close its pair (the shadow branch runs on in the server); a task still open then fails, named.
    """

    def __init__(
        self,
        url: str,
        assistant_id: str,
        *,
        input: Callable[[Mapping[str, Any]], Any] = default_input,
        api_key: str | None = None,
        settle_s: float = 300.0,
    ) -> None:
        self.url = url
        self.assistant_id = assistant_id
        self.input = input
        self.api_key = api_key
        self.settle_s = settle_s

    @asynccontextmanager
    async def __call__(self, guard: CriticGuard) -> AsyncIterator[_ServerAdapter]:
        from langgraph_sdk import get_client  # the SDK only where a pilot drives a server

        if guard.store is None:
            raise ValueError("a pilot over a server reads the outcomes from the server's store: give the guard one")
        client = get_client(url=self.url, api_key=self.api_key)
        try:
            yield _ServerAdapter(self, client, guard, guard.store)
        finally:
            await client.aclose()


class _ServerAdapter:
    """One pilot's connection to the server."""

    def __init__(self, spec: ServerPilot, client: Any, guard: CriticGuard, store: Store) -> None:
        self.spec, self.client, self.guard, self.store = spec, client, guard, store

    async def run_task(self, task: PilotTask) -> None:
        thread = await self.client.threads.create(metadata={"critic_guard_task": task.task_id})
        await self.client.runs.wait(
            thread["thread_id"],
            self.spec.assistant_id,
            input=self.spec.input(task.data),
            context=task.metadata,
            raise_error=True,
        )
        deadline = time.monotonic() + self.spec.settle_s
        while (state := await asyncio.to_thread(self._state, task)) != "closed":
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task.task_id!r}: {state} {self.spec.settle_s:g} s after its run returned")
            await asyncio.sleep(_POLL_S)

    def _state(self, task: PilotTask) -> str:
        """What the store shows of the task's attempt: ``closed`` once its production run ended and its pair is
        complete or excluded; otherwise what is still missing (the timeout message)."""
        runs = self.store.runs_of_task(self.guard.guard_key, task.task_id)
        mine = [r for r in runs if r.task is not None and r.task.get(ATTEMPT_KEY) == task.attempt_id]
        production = next((r for r in mine if r.parent_run_id is None), None)
        if production is None:
            return (
                f"no run in the store under guard key {self.guard.guard_key!r} (does the deployment's guard use "
                "this store and the suite's agent name, critic and policy?)"
            )
        if production.status == "running":
            return "its production run has not ended"
        try:
            pair = self.store.get_pair(production.run_id)
        except UnknownPairError:
            return "no pair opened (is the deployment's guard in mode pilot or auto?)"
        return "closed" if pair.status is not PairStatus.OPEN else "its pair is still open"
