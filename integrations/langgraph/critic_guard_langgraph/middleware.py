"""``CriticGuardMiddleware``: a critic-guard for agents built with ``langchain.agents.create_agent``.

After every model call (``after_model``, before the proposed tool calls run) the guard's critic judges the
proposed assistant message, and the guard's policy decides:

* **ROLLBACK**: the proposed message is removed (``RemoveMessage``) and the agent jumps back to the model, so its
  tools never run. The retry keeps the same step index.
* **APPEND**: the step runs (its tools execute) and the next model call sees a warning. On a final answer (no
  tool calls) there is nothing left to run, so the agent re-enters the model once with the warning after its
  answer and may revise it; a silent APPEND on a final answer changes nothing.
* nothing, in modes ``off`` (not even the critic runs) and ``observe`` (the verdict is recorded, the state is not
  touched beyond this middleware's private counters), or when the policy does not flag the step.

Where the feedback goes. The text is shown as an *ephemeral* user message added in ``wrap_model_call`` to the one
model request that follows the intervention; it is not written to the conversation state. Why:

* after a rollback the withdrawn message is gone from the history, so feedback about it would be dangling
  context for every later call; the retry is the one call that needs it;
* it is placed on the exact message list sent to the provider (:func:`~critic_guard_langgraph.messages.insert_note`),
  after complete tool-call groups, so it can never sit between an assistant tool call and its tool results,
  whatever other middleware did to the history;
* the thread's transcript stays the agent's own conversation: a chat UI does not show guard text as if the user
  had typed it, and observe / off runs are byte-for-byte the unguarded agent's.

The pending note lives in checkpointed private state, so it survives an interrupt between the intervention and
the next model call.

State. Counters live in this middleware's private state (``PrivateStateAttr``: in the checkpoint, not in the
agent's input or output): the run id, the step index, the interventions so far and the step of the last one, the
pending note. A run is one agent invocation: ``before_agent`` starts it in the guard's store, ``after_agent`` ends
it (a run that raises stays open in the store).

Bounds. ``max_interventions`` bounds rollback loops; besides, the middleware does not intervene when fewer than
:data:`HEADROOM` graph steps remain before the recursion limit, so a retry never causes a ``GraphRecursionError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ContextT,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
    ResponseT,
    hook_config,
)
from langchain_core.messages import AIMessage, RemoveMessage
from langgraph.managed.is_last_step import RemainingStepsManager
from typing_extensions import override

from critic_guard.types import Action, Arm, StepContext
from critic_guard_langgraph._runs import (
    action_of,
    areview_or_none,
    is_off,
    review_or_none,
    run_arm,
    safely,
    task_metadata,
)
from critic_guard_langgraph.messages import insert_note, make_note, to_neutral

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from langgraph.runtime import Runtime

    from critic_guard.guard import CriticGuard, StepReview

__all__ = ["HEADROOM", "CriticGuardMiddleware", "CriticGuardState"]

HEADROOM = 4
"""Graph steps that must remain before the recursion limit for the middleware to intervene: the retry needs the
model node and the after-model hooks, and the agent must still be able to finish."""

RUN_ID: Final = "critic_guard_run_id"
ARM: Final = "critic_guard_arm"
TASK: Final = "critic_guard_task"
STEP: Final = "critic_guard_step"
INTERVENTIONS: Final = "critic_guard_interventions"
LAST_INTERVENTION: Final = "critic_guard_last_intervention_step"
NOTE: Final = "critic_guard_note"
REMAINING: Final = "critic_guard_remaining_steps"


class CriticGuardState(AgentState[ResponseT]):
    """Private state of :class:`CriticGuardMiddleware` (hidden from the agent's input and output schemas)."""

    critic_guard_run_id: NotRequired[Annotated[str | None, PrivateStateAttr]]
    critic_guard_arm: NotRequired[Annotated[str, PrivateStateAttr]]
    critic_guard_task: NotRequired[Annotated[dict[str, Any], PrivateStateAttr]]
    critic_guard_step: NotRequired[Annotated[int, PrivateStateAttr]]
    critic_guard_interventions: NotRequired[Annotated[int, PrivateStateAttr]]
    critic_guard_last_intervention_step: NotRequired[Annotated[int | None, PrivateStateAttr]]
    critic_guard_note: NotRequired[Annotated[str | None, PrivateStateAttr]]
    # Computed by LangGraph on every read, never stored (a managed value must be the last annotation).
    critic_guard_remaining_steps: NotRequired[Annotated[int, PrivateStateAttr, RemainingStepsManager]]


class CriticGuardMiddleware(AgentMiddleware[CriticGuardState[ResponseT], ContextT, ResponseT]):
    """Judge each proposed step of a ``create_agent`` agent and intervene as the guard's policy says.

    Example:
        ```python
        guard = CriticGuard(my_critic, mode="on", policy=Policy(action="rollback"))
        agent = create_agent(model, tools, middleware=[CriticGuardMiddleware(guard)])
        ```

    Args:
        guard: the guard (critic, policy, mode, store). One middleware instance serves any number of concurrent
            runs: everything per-run lives in the graph state.
        arm: the arm runs belong to. Default: ``treatment`` in mode ``on``, else ``control`` (modes
            ``pilot`` and ``auto`` serve the control arm; their treatment arm runs in a shadow fork).
    """

    state_schema = CriticGuardState  # type: ignore[assignment]

    def __init__(self, guard: CriticGuard, *, arm: Arm | None = None) -> None:
        super().__init__()
        self.guard = guard
        self.arm = arm

    # -- run lifecycle ------------------------------------------------------------------------------------------

    @override
    def before_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """Start a run in the guard's store and reset the counters (state from earlier runs may linger)."""
        if is_off(self.guard):
            return {RUN_ID: None} if state.get(RUN_ID) is not None else None
        arm = run_arm(self.guard, self.arm)
        task = task_metadata(state["messages"], runtime.context)
        run_id = safely("start_run", self.guard.start_run, task=task, arm=arm, default=None)
        return {
            RUN_ID: run_id,
            ARM: arm.value,
            TASK: task,
            STEP: 0,
            INTERVENTIONS: 0,
            LAST_INTERVENTION: None,
            NOTE: None,
        }

    async def abefore_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`before_agent` (starting a run is one small store write)."""
        return self.before_agent(state, runtime)

    @override
    def after_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """End the run in the store; clear the run id and any note that no model call consumed."""
        run_id = state.get(RUN_ID)
        if run_id is None:
            return None
        safely("end_run", self.guard.end_run, run_id, status="completed", default=None)
        return {RUN_ID: None, NOTE: None}

    async def aafter_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_agent`."""
        return self.after_agent(state, runtime)

    # -- judging ------------------------------------------------------------------------------------------------

    @hook_config(can_jump_to=["model"])
    @override
    def after_model(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """Judge the proposed message and intervene (see the module docstring)."""
        ctx = self._context(state)
        if ctx is None:
            return self._advance(state)
        review = review_or_none(self.guard, ctx, *self._budget(state))
        return self._apply(state, review)

    @hook_config(can_jump_to=["model"])
    async def aafter_model(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_model`: the critic is awaited (with the guard's timeout) on the event loop."""
        ctx = self._context(state)
        if ctx is None:
            return self._advance(state)
        review = await areview_or_none(self.guard, ctx, *self._budget(state))
        return self._apply(state, review)

    def _context(self, state: CriticGuardState[ResponseT]) -> StepContext | None:
        """The critic's view of this step, or None when there is nothing to judge."""
        if is_off(self.guard):
            return None
        run_id = state.get(RUN_ID)
        messages = state["messages"]
        if run_id is None or not messages or not isinstance(messages[-1], AIMessage):
            return None
        return StepContext(
            run_id=run_id,
            step=state.get(STEP, 0),
            messages=tuple(to_neutral(messages)),
            task=state.get(TASK) or {},
            arm=Arm(state.get(ARM, Arm.CONTROL)),
        )

    def _budget(self, state: CriticGuardState[ResponseT]) -> tuple[int, int | None]:
        """(interventions so far, step of the last one), as the policy should see them.

        Near the recursion limit the budget reads as spent, so the policy declines and records why.
        """
        interventions = state.get(INTERVENTIONS, 0)
        if state.get(REMAINING, HEADROOM + 1) <= HEADROOM:
            interventions = max(interventions, self.guard.policy.max_interventions)
        return interventions, state.get(LAST_INTERVENTION)

    def _advance(self, state: CriticGuardState[ResponseT]) -> dict[str, Any] | None:
        """No judgement: only move to the next step (and drop a consumed note) if this run is being tracked."""
        if is_off(self.guard) or state.get(RUN_ID) is None:
            return None
        update: dict[str, Any] = {STEP: state.get(STEP, 0) + 1}
        if state.get(NOTE) is not None:
            update[NOTE] = None
        return update

    def _apply(self, state: CriticGuardState[ResponseT], review: StepReview | None) -> dict[str, Any]:
        step = state.get(STEP, 0)
        update: dict[str, Any] = {}
        if state.get(NOTE) is not None:
            update[NOTE] = None  # the model call that just returned consumed it
        action = action_of(review)
        if action is Action.NONE or review is None:
            update[STEP] = step + 1
            return update
        proposed = state["messages"][-1]
        assert isinstance(proposed, AIMessage) and proposed.id is not None  # checked by _context; add_messages ids
        feedback = review.decision.feedback
        update[INTERVENTIONS] = state.get(INTERVENTIONS, 0) + 1
        update[LAST_INTERVENTION] = step
        update[NOTE] = feedback
        if action is Action.ROLLBACK:
            update["messages"] = [RemoveMessage(id=proposed.id)]
            update["jump_to"] = "model"
        else:  # APPEND
            update[STEP] = step + 1
            if not proposed.tool_calls and feedback is not None:
                update["jump_to"] = "model"
        return update

    # -- showing the note ---------------------------------------------------------------------------------------

    @override
    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT]:
        """Add the pending feedback or warning to this model request only (see the module docstring)."""
        return handler(self._with_note(request))

    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT]:
        """Async :meth:`wrap_model_call`."""
        return await handler(self._with_note(request))

    def _with_note(self, request: ModelRequest[ContextT]) -> ModelRequest[ContextT]:
        state = request.state
        note = state.get(NOTE)
        if not isinstance(note, str) or not note or is_off(self.guard):
            return request
        key = f"{state.get(RUN_ID)}-{state.get(STEP, 0)}-{state.get(INTERVENTIONS, 0)}"
        return request.override(messages=insert_note(request.messages, make_note(note, key)))
