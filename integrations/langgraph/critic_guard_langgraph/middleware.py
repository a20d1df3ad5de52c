"""``CriticGuardMiddleware``: a critic-guard for agents built with ``langchain.agents.create_agent``.

After every model call (``after_model``, before the proposed tool calls run) the guard's critic judges the
proposed assistant message, and the guard's policy decides:

* **ROLLBACK**: the proposed message is removed (``RemoveMessage``) and the agent jumps back to the model, so its
  tools never run. The retry keeps the same step index and sees the feedback, if any.
* **APPEND**: the step runs (its tools execute) and the next model call sees a warning after the tool results.
  On a final answer (no tool calls) there is nothing left to run, so the agent re-enters the model once with the
  warning after its answer and may revise it; a silent APPEND on a final answer changes nothing.
* nothing, in modes ``off`` (not even the critic runs) and ``observe`` (the verdict is recorded, the state is not
  touched beyond this middleware's private record), or when the policy does not flag the step.

Where the feedback goes. The text is a user message (a *guard note*, recognisable by its id, see
:func:`~critic_guard_langgraph.messages.is_guard_note`) written into the conversation at the place where the model
sees it: at the end of the history after a rollback's ``RemoveMessage``, after the tool results for an APPEND
(added by ``wrap_model_call`` to the request and to the model node's output), after the answer for an APPEND on
a final answer. Why persisted rather than shown once and dropped:

* the history is exactly what the model saw, so a transcript can be audited, and a run resumed or forked from
  any checkpoint (DESIGN §3) continues from the same context;
* it is what :func:`~critic_guard_langgraph.graph.guard_graph` does for any graph, so both integrations behave
  alike;
* a rollback needs no ``wrap_model_call`` layer. LangChain wraps every ``wrap_model_call`` in a tracing layer that
  costs about 50 µs per step (sync) and 200 µs (async) even when it does nothing, so only guards whose policy
  acts by APPEND, which cannot place a warning after tool results from ``after_model``, get that hook.

A note never sits between an assistant tool call and its results: it is only added at the end of a history whose
tool calls are all answered (:func:`~critic_guard_langgraph.messages.note_index`); otherwise the intervention
happens silently and a warning is logged (create_agent never produces that case).

State. The counters live in one private record (:class:`GuardRun`, ``PrivateStateAttr``: in the checkpoint, not
in the agent's input or output): the run id, the step index, the interventions so far and the step of the last
one, a pending APPEND warning. A run is one agent invocation: ``before_agent`` starts it in the guard's store,
``after_agent`` ends it (a run that raises stays open in the store).

Bounds. ``max_interventions`` bounds rollback loops; besides, the middleware does not intervene when fewer than
:data:`HEADROOM` graph steps remain before the recursion limit, so a retry never causes a ``GraphRecursionError``.
"""

from __future__ import annotations

import inspect
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final, NotRequired, cast

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
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langgraph.config import get_config
from langgraph.managed.is_last_step import RemainingStepsManager
from typing_extensions import TypedDict, override

from critic_guard.guard import StepReview
from critic_guard.policy import Decision
from critic_guard.store.base import PairKind
from critic_guard.types import Action, Arm, Mode, StepContext, Verdict
from critic_guard_langgraph._runs import (
    action_of,
    areview_or_none,
    asafely,
    instrumentation_parent,
    is_off,
    logger,
    review_or_none,
    run_arm,
    safely,
    task_metadata,
)
from critic_guard_langgraph.fork import ForkError, check_durability
from critic_guard_langgraph.messages import NeutralHistory, make_note, note_index
from critic_guard_langgraph.runner import ForkPoint, Judge, ShadowRunner
from critic_guard_langgraph.shadow import ShadowBranch

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from langgraph.runtime import Runtime

    from critic_guard.guard import CriticGuard

__all__ = ["HEADROOM", "CriticGuardMiddleware", "CriticGuardState", "GuardRun"]

HEADROOM = 4
"""Graph steps that must remain before the recursion limit for the middleware to intervene: the retry needs the
model node and the after-model hooks, and the agent must still be able to finish."""

RECORD: Final = "critic_guard"
REMAINING: Final = "critic_guard_remaining_steps"


class GuardRun(TypedDict):
    """This middleware's record of the current run, kept in the agent's state (one channel, written as a whole)."""

    run_id: str | None  # None once the run has ended (or when starting it failed): nothing is judged
    arm: str
    task: dict[str, Any]
    step: int  # 0-based index of the model step being judged; a retry after a rollback keeps it
    interventions: int
    last_intervention_step: int | None
    warning: str | None  # an APPEND warning for the model call after the tool results
    flag_step: NotRequired[int | None]  # pilots: the step of the run's first flag (where it forked, if it did)


class CriticGuardState(AgentState[ResponseT]):
    """Private state of :class:`CriticGuardMiddleware` (hidden from the agent's input and output schemas).

    One record instead of a channel per counter: every channel costs LangGraph a little on every superstep.
    """

    critic_guard: NotRequired[Annotated[GuardRun | None, PrivateStateAttr]]
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
        arm: the arm runs belong to. Default: the arm the guard serves now (``guard.serve_arm()``: treatment in
            mode ``on``, control in ``observe``, ``config.serve`` in a pilot).
    """

    state_schema = CriticGuardState  # type: ignore[assignment]

    def __new__(
        cls,
        guard: CriticGuard,
        *,
        arm: Arm | None = None,
        judge: Judge | None = None,
        fork_context: Callable[[Any], Any] | None = None,
    ) -> CriticGuardMiddleware[ResponseT, ContextT]:
        # Only APPEND needs a model-call hook (see the module docstring), so only its variant defines one.
        if cls is CriticGuardMiddleware and guard.policy.action is Action.APPEND:
            cls = _AppendingCriticGuardMiddleware
        return super().__new__(cls)

    def __init__(
        self,
        guard: CriticGuard,
        *,
        arm: Arm | None = None,
        judge: Judge | None = None,
        fork_context: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.guard = guard
        self.arm = arm
        self.judge = judge
        self.fork_context = fork_context
        self.runner: ShadowRunner | None = None
        self._histories = NeutralHistory()

    def attach(self, agent: Any) -> Any:
        """Give the middleware its compiled agent (needed by pilots: shadow branches resume that graph); returns it.

        ``agent = guard_middleware.attach(create_agent(..., middleware=[guard_middleware], checkpointer=saver))``
        """
        self.runner = ShadowRunner(agent, self.guard, judge=self.judge, fork_context=self.fork_context)
        return agent

    @property
    def _piloting(self) -> bool:
        """Whether runs may fork (modes pilot and auto, fork design): the only case with branch bookkeeping."""
        return self.guard.config.mode in (Mode.PILOT, Mode.AUTO) and self.guard.config.design == "fork"

    @property
    def name(self) -> str:
        """The graph's node names derive from it: the same for both variants."""
        return "CriticGuardMiddleware"

    # -- run lifecycle ------------------------------------------------------------------------------------------

    @override
    def before_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """Start a run in the guard's store with fresh counters (the record of an earlier run may linger)."""
        if is_off(self.guard):
            return {RECORD: None} if state.get(RECORD) is not None else None
        if self._piloting and self.runner is None:
            raise ForkError(
                f"mode {self.guard.config.mode.value!r} forks shadow branches of the agent: call "
                "middleware.attach(agent) with the compiled agent before running it"
            )
        arm = run_arm(self.guard, self.arm)
        task = task_metadata(state["messages"], runtime.context)
        info = runtime.execution_info
        run_id = safely(
            "start_run",
            self.guard.start_run,
            task=task,
            arm=arm,
            conversation_id=None if info is None else info.thread_id,
            trace_parent=instrumentation_parent(),
            default=None,
        )
        record = GuardRun(
            run_id=run_id,
            arm=arm.value,
            task=task,
            step=0,
            interventions=0,
            last_intervention_step=None,
            warning=None,
            flag_step=None,
        )
        return {RECORD: record}

    async def abefore_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`before_agent` (starting a run is one small store write)."""
        return self.before_agent(state, runtime)

    @override
    def after_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """End the run in the store; keep the counters for inspection, drop a warning no model call consumed."""
        record = state.get(RECORD)
        if record is None or record["run_id"] is None:
            return None
        ok = None
        if self._production_pilot(record) and self.judge is not None:
            ok = safely("judge", self.judge, record["task"], state, default=None)
            if inspect.isawaitable(ok):
                raise TypeError("an async judge needs the async API (ainvoke / astream)")
        self._end(record["run_id"], ok)
        return {RECORD: {**record, "run_id": None, "warning": None}}

    async def aafter_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_agent` (an async judge is awaited)."""
        record = state.get(RECORD)
        if record is None or record["run_id"] is None:
            return None
        ok = None
        if self._production_pilot(record) and self.judge is not None:
            verdict = safely("judge", self.judge, record["task"], state, default=None)
            ok = await asafely("judge", _awaited, verdict, default=None) if inspect.isawaitable(verdict) else verdict
        self._end(record["run_id"], ok)
        return {RECORD: {**record, "run_id": None, "warning": None}}

    def _end(self, run_id: str, ok: object) -> None:
        """End the run with its outcome, if judged (outcome first, so it lands on the run's open span).

        Not a shadow branch's run: its runner judges the branch's final state and ends the run with the outcome.
        """
        self._histories.forget(run_id)
        if _branch() is not None:
            return
        success = ok if isinstance(ok, bool) else None
        if ok is not None and success is None:
            logger.warning("critic-guard: the judge returned %r, not a bool; no outcome recorded", ok)
        safely("end_run", self.guard.end_run, run_id, status="completed", success=success, default=None)

    def _production_pilot(self, record: GuardRun) -> bool:
        """At the end of a production run of a pilot: open the concordant pair of a run never flagged."""
        if not self._piloting or _branch() is not None:
            return False
        run_id = record["run_id"]
        assert run_id is not None
        if record.get("flag_step") is None and self.guard.should_fork(run_id):
            safely(
                "open_pair",
                self.guard.open_pair,
                run_id,
                control_run_id=run_id,
                treatment_run_id=run_id,
                flagged=False,
                default=None,
            )
        return True

    # -- judging ------------------------------------------------------------------------------------------------

    @hook_config(can_jump_to=["model"])
    @override
    def after_model(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """Judge the proposed message and intervene (see the module docstring)."""
        ctx = self._context(state)
        if ctx is None:
            return self._advance(state)
        branch = _branch() if self._piloting else None
        if branch is not None and ctx.run_id != branch.run_id:
            return self._apply_fork(state, branch)
        review = review_or_none(self.guard, ctx, *self._budget(state))
        forked = self._first_flag(state, review, runtime, branch, asynchronous=False)
        return _flagged_at(self._apply(state, review), forked)

    @hook_config(can_jump_to=["model"])
    async def aafter_model(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_model`: the critic is awaited (with the guard's timeout) on the event loop."""
        ctx = self._context(state)
        if ctx is None:
            return self._advance(state)
        branch = _branch() if self._piloting else None
        if branch is not None and ctx.run_id != branch.run_id:
            return self._apply_fork(state, branch)
        review = await areview_or_none(self.guard, ctx, *self._budget(state))
        forked = self._first_flag(state, review, runtime, branch, asynchronous=True)
        return _flagged_at(self._apply(state, review), forked)

    # -- pilots ---------------------------------------------------------------------------------------------------

    def _first_flag(
        self,
        state: CriticGuardState[ResponseT],
        review: StepReview | None,
        runtime: Runtime[ContextT],
        branch: ShadowBranch | None,
        *,
        asynchronous: bool,
    ) -> int | None:
        """At a production run's first flag in a pilot: fork the other arm into a shadow branch (an A/B pair), and
        for ``aa_fraction`` of runs a second branch of the served arm (an A/A pair: rerun noise).

        Returns the flag step when this is the run's first flag (whether or not it forked), else None.
        """
        record = state.get(RECORD)
        if not self._piloting or branch is not None or review is None or not review.decision.flagged:
            return None
        if record is None or record.get("flag_step") is not None:
            return None
        prod, step = review.run_id, review.step
        ab, aa = self.guard.should_fork(prod), self.guard.should_fork_aa(prod)
        if not (ab or aa):
            return step
        config = get_config()
        check_durability(config)
        info = runtime.execution_info
        if info is None or info.thread_id is None or self.runner is None:
            raise ForkError("a pilot forks from checkpoints: compile the agent with a checkpointer and attach it")
        fork = ForkPoint(info.thread_id, info.checkpoint_id, info.task_id, config.get("recursion_limit"))
        served = Arm(record["arm"])
        if ab:
            other = Arm.TREATMENT if served is Arm.CONTROL else Arm.CONTROL
            decision = Decision(True, Action.NONE, None, "control_arm")
            if other is Arm.TREATMENT and review.verdict is not None:  # what the treatment arm does at this step
                interventions, last = self._budget(state)
                decision = self.guard.policy.decide(
                    review.verdict, step=step, interventions=interventions, last_intervention_step=last
                )
            self._fork(record, review, fork, runtime, asynchronous, arm=other, decision=decision, kind=PairKind.AB)
        if aa:  # the served arm again, doing at the fork step what production did
            self._fork(
                record, review, fork, runtime, asynchronous, arm=served, decision=review.decision, kind=PairKind.AA
            )
        return step

    def _fork(
        self,
        record: GuardRun,
        review: StepReview,
        fork: ForkPoint,
        runtime: Runtime[ContextT],
        asynchronous: bool,
        *,
        arm: Arm,
        decision: Decision,
        kind: PairKind,
    ) -> None:
        """Start one shadow branch of ``arm`` from ``fork`` and open its pair with the production run."""
        prod, step = review.run_id, review.step
        branch_id = uuid.uuid4().hex
        self.guard.start_run(run_id=branch_id, task=record["task"], arm=arm, parent_run_id=prod, fork_step=step)
        if kind is PairKind.AA:
            pair_id, control, treatment = f"{prod}~aa", prod, branch_id
        else:
            pair_id = prod
            control, treatment = (prod, branch_id) if arm is Arm.TREATMENT else (branch_id, prod)
        self.guard.open_pair(
            pair_id,
            control_run_id=control,
            treatment_run_id=treatment,
            flagged=True,
            fork_step=step,
            kind=kind,
            fork_checkpoint_id=fork.checkpoint_id,
        )
        verdict = review.verdict
        shadow = ShadowBranch(
            pair_id=pair_id,
            run_id=branch_id,
            arm=arm,
            fork_step=step,
            action=decision.action,
            feedback=decision.feedback,
            p_fail=None if verdict is None else verdict.p_fail,
            rationale=None if verdict is None else verdict.rationale,
            label=None if verdict is None else verdict.label,
        )
        runner = self.runner
        assert runner is not None  # checked by _first_flag
        if asynchronous:
            runner.asubmit(shadow, fork, task=record["task"], context=runtime.context)
        else:
            runner.submit(shadow, fork, task=record["task"], context=runtime.context)

    def _apply_fork(self, state: CriticGuardState[ResponseT], branch: ShadowBranch) -> dict[str, Any]:
        """The fork step in a shadow branch: become the branch's run and apply the decision taken at the fork."""
        record = state.get(RECORD)
        assert record is not None
        record = GuardRun(**{**record, "run_id": branch.run_id, "arm": branch.arm.value, "flag_step": branch.fork_step})
        verdict = None if branch.p_fail is None else Verdict(branch.p_fail, branch.rationale, branch.label)
        decision = Decision(True, branch.action, branch.feedback, "fork")
        review = StepReview(branch.run_id, record["step"], verdict, decision, None, 0.0)
        safely("record_fork_step", self.guard.record_fork_step, review, default=None)
        branch_state = cast("CriticGuardState[ResponseT]", {**state, RECORD: record})
        return self._apply(branch_state, review)

    def _tracked(self, state: CriticGuardState[ResponseT]) -> GuardRun | None:
        record = state.get(RECORD)
        if record is None or record["run_id"] is None or is_off(self.guard):
            return None
        return record

    def _context(self, state: CriticGuardState[ResponseT]) -> StepContext | None:
        """The critic's view of this step, or None when there is nothing to judge."""
        record = self._tracked(state)
        messages = state["messages"]
        if record is None or record["run_id"] is None or not messages or not isinstance(messages[-1], AIMessage):
            return None  # (run_id is never None here; the check narrows the type)
        return StepContext(
            run_id=record["run_id"],
            step=record["step"],
            messages=self._histories.convert(record["run_id"], messages),
            task=record["task"],
            arm=Arm(record["arm"]),
        )

    def _budget(self, state: CriticGuardState[ResponseT]) -> tuple[int, int | None]:
        """(interventions so far, step of the last one), as the policy should see them.

        Near the recursion limit the budget reads as spent, so the policy declines and records why.
        """
        record = state.get(RECORD)
        assert record is not None  # checked by _context
        interventions = record["interventions"]
        if state.get(REMAINING, HEADROOM + 1) <= HEADROOM:
            interventions = max(interventions, self.guard.policy.max_interventions)
        return interventions, record["last_intervention_step"]

    def _advance(self, state: CriticGuardState[ResponseT]) -> dict[str, Any] | None:
        """Nothing to judge: only move to the next step if this run is being tracked."""
        record = self._tracked(state)
        if record is None:
            return None
        return {RECORD: {**record, "step": record["step"] + 1, "warning": None}}

    def _apply(self, state: CriticGuardState[ResponseT], review: StepReview | None) -> dict[str, Any]:
        record = state.get(RECORD)
        assert record is not None and record["run_id"] is not None  # checked by _context
        step = record["step"]
        action = action_of(review)
        if review is None or action is Action.NONE:  # (the model call that just returned consumed any warning)
            return {RECORD: {**record, "step": step + 1, "warning": None}}
        messages = state["messages"]
        proposed = messages[-1]
        assert isinstance(proposed, AIMessage) and proposed.id is not None  # checked by _context; add_messages ids
        feedback = review.decision.feedback
        record = GuardRun(
            **{**record, "interventions": record["interventions"] + 1, "last_intervention_step": step, "warning": None}
        )
        note = None if feedback is None else make_note(feedback, _note_key(record))
        if action is Action.ROLLBACK:  # the retry is the same step
            shown = _placeable(note, messages[:-1])
            return {RECORD: record, "messages": [RemoveMessage(id=proposed.id), *shown], "jump_to": "model"}
        record["step"] = step + 1  # APPEND
        if proposed.tool_calls:  # the warning waits for the tool results (see _AppendingCriticGuardMiddleware)
            record["warning"] = feedback
            return {RECORD: record}
        shown = _placeable(note, messages)
        return {RECORD: record, "messages": shown, "jump_to": "model"} if shown else {RECORD: record}


class _AppendingCriticGuardMiddleware(CriticGuardMiddleware[ResponseT, ContextT]):
    """The variant for APPEND policies: shows a pending warning to the model call after the tool results."""

    @override
    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT]:
        """Add the pending warning at the end of the request, and to the history just before the reply."""
        note = self._warning(request)
        if note is None:
            return handler(request)
        return _with_note_first(note, handler(request.override(messages=[*request.messages, note])))

    @override
    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT]:
        """Async :meth:`wrap_model_call`."""
        note = self._warning(request)
        if note is None:
            return await handler(request)
        return _with_note_first(note, await handler(request.override(messages=[*request.messages, note])))

    def _warning(self, request: ModelRequest[ContextT]) -> HumanMessage | None:
        record = request.state.get(RECORD)
        if not isinstance(record, dict) or not record.get("warning") or is_off(self.guard):
            return None
        note = make_note(record["warning"], _note_key(cast("GuardRun", record)))
        return next(iter(_placeable(note, request.messages)), None)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _branch() -> ShadowBranch | None:
    """The shadow branch this run is, from its config (None for a production run)."""
    return ShadowBranch.from_config(get_config())


def _flagged_at(update: dict[str, Any], step: int | None) -> dict[str, Any]:
    """Remember a production run's first flag (so it neither forks twice nor counts as never flagged)."""
    if step is not None:
        update[RECORD] = {**update[RECORD], "flag_step": step}
    return update


def _note_key(record: GuardRun) -> str:
    """Unique per intervention: run, step, intervention count."""
    return f"{record['run_id']}-{record['last_intervention_step']}-{record['interventions']}"


def _placeable(note: HumanMessage | None, history: Sequence[BaseMessage]) -> list[HumanMessage]:
    """``[note]`` if it can go at the end of ``history`` without splitting a tool-call group, else ``[]``."""
    if note is None:
        return []
    if note_index(history) != len(history):
        logger.warning("critic-guard: the history ends inside a tool-call group; the note is not shown")
        return []
    return [note]


def _with_note_first(note: HumanMessage, response: ModelResponse[ResponseT]) -> ModelResponse[ResponseT]:
    return ModelResponse(result=[note, *response.result], structured_response=response.structured_response)
