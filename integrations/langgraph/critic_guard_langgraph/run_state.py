"""The middleware's record of a run in the agent's state, and what a hook reads from the run around it.

The counters live in one private record (:class:`GuardRun`, ``PrivateStateAttr``: in the checkpoint, not in the
agent's input or output), written by the model node with its messages: the run id, the step index, the interventions
so far and the step of the last one, a pending APPEND warning, and the run's input. Not the runtime context: it often
holds credentials, so its fields are added to the task in process at each use (:func:`task_of`) and never reach the
checkpoint (docs/telemetry.md, "What the store keeps"). A run is one agent invocation: ``before_agent`` starts it in
the guard's store, ``after_agent`` ends it; a run that never got there (it raised, or was left at an interrupt) is
ended ``abandoned`` by the thread's next run (:func:`open_run` finds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final, NotRequired

from langchain.agents.middleware.types import AgentState, PrivateStateAttr, ResponseT
from langgraph.config import get_config
from typing_extensions import TypedDict

from critic_guard_langgraph._runs import context_fields
from critic_guard_langgraph.shadow import ShadowBranch

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

__all__ = [
    "RECORD",
    "CriticGuardState",
    "GuardRun",
    "current_branch",
    "new_record",
    "open_run",
    "task_of",
    "thread_of",
]

RECORD: Final = "critic_guard"


class GuardRun(TypedDict):
    """This middleware's record of the current run, kept in the agent's state (one channel, written as a whole)."""

    run_id: str | None  # None once the run has ended (or when starting it failed): nothing is judged
    arm: str
    task: dict[str, Any]  # the run's input only (see task_of): the runtime context is never checkpointed
    step: int  # 0-based index of the next model step; a retry after a rollback keeps it
    interventions: int
    last_intervention_step: int | None
    warning: str | None  # an APPEND warning for the model call after the tool results
    flag_step: NotRequired[int | None]  # pilots: the step of the run's first flag (where it forked, if it did)


class CriticGuardState(AgentState[ResponseT]):
    """Private state of :class:`~critic_guard_langgraph.CriticGuardMiddleware` (hidden from the agent's input and
    output schemas).

    One record instead of a channel per counter: every channel costs LangGraph a little on every superstep.
    """

    critic_guard: NotRequired[Annotated[GuardRun | None, PrivateStateAttr]]


def new_record(run_id: str | None, arm: str, task: dict[str, Any]) -> GuardRun:
    """A run's record at its start: fresh counters (the record of an earlier run on the thread may linger)."""
    return GuardRun(
        run_id=run_id,
        arm=arm,
        task=task,
        step=0,
        interventions=0,
        last_intervention_step=None,
        warning=None,
        flag_step=None,
    )


def open_run(state: Mapping[str, Any]) -> GuardRun | None:
    """The run record in ``state`` while its run is open: started, and not ended yet (``after_agent`` clears its
    ``run_id``). At ``after_agent`` that is the run ending now; at ``before_agent`` a previous run of the thread
    that never reached its end (it raised, or the thread took a new input instead of resuming it)."""
    record: GuardRun | None = state.get(RECORD)
    return record if record is not None and record["run_id"] is not None else None


def task_of(recorded: dict[str, Any], runtime: Runtime[Any]) -> dict[str, Any]:
    """The run's full task, in process: the recorded input and the runtime context's fields (critics and the judge
    see it whole; the store keeps what ``guard.task_record`` allows, the checkpoint never holds the context)."""
    return {**recorded, **context_fields(runtime.context)}


def thread_of(config: Any) -> str | None:
    """The thread a run's config names (a pilot awaits one conversation's background verdicts by it)."""
    thread = (config or {}).get("configurable", {}).get("thread_id")
    return None if thread is None else str(thread)


def current_branch() -> ShadowBranch | None:
    """The shadow branch this run is, from its config (None for a production run)."""
    return ShadowBranch.from_config(get_config())
