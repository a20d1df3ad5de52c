"""``CriticGuardMiddleware``: a critic-guard for agents built with ``langchain.agents.create_agent``.

The guard works inside the model node (``wrap_model_call``): the critic judges each proposed assistant message as
soon as the model returns it, before it enters the agent's state and before any of its tools run, and the guard's
policy decides:

* **ROLLBACK**: the proposal is discarded and the model is asked again, in the same model node, with the feedback
  (if any) at the end of its input. The retry keeps the step index. A discarded proposal never reaches the state,
  the checkpoint or the tools.
* **APPEND**: the proposal is kept and its tools run; the next model call sees a warning after the tool results.
  On a final answer (no tool calls) there is nothing left to run, so the model is asked again at once, with the
  warning after its answer, and may revise it (the revision is the next step, judged like any other); a silent
  APPEND on a final answer changes nothing.
* nothing, in modes ``off`` (not even the critic runs) and ``observe`` (the verdict is recorded, the state is not
  touched beyond this middleware's private record), or when the policy does not flag the step.

Why inside the model node rather than in an ``after_model`` hook (measured by ``benchmarks/overhead.py``): every
extra node costs LangGraph a superstep, about 400 µs per step here, while LangChain's model-call wrapper costs
about 100-150 µs. And retries take no graph steps: a rollback loop is bounded by ``max_interventions`` alone and can
never run into the recursion limit. Nor does ``ModelCallLimitMiddleware`` count them: it counts model steps (in
``before_model`` / ``after_model``), so a run makes at most ``run_limit + max_interventions`` model calls; retry and
fallback middlewares belong after the guard in the list, inside it (integrations/langgraph/README.md, "With
LangChain's other middlewares").

Off the user's path. Where the verdict cannot act (mode ``observe``; ``pilot`` / ``auto`` on an arm the guard does
not act on) the step does not wait for it: the critic call, the step row and the first-flag fork follow in the
background (:mod:`.offpath`), from the same context, proposal and checkpoint, unless ``fork_context`` (it must copy
the world at the flag) or ``judge_on_path=True`` keeps them on the path (docs/pilot-design.md, "Judging off the
user's path").

What stream consumers see (``stream_mode="messages"`` shows a proposal while the model writes it): a withdrawn proposal
is named in a custom stream event and a LangChain custom event, and ``stream_proposals="judged"`` keeps proposals
off the messages stream until accepted (:mod:`critic_guard_langgraph.streaming`).

Where the feedback goes. The text is a user message (a *guard note*, recognisable by its id, see
:func:`~critic_guard_langgraph.messages.is_guard_note`) that the model node returns ahead of the accepted proposal,
at the place where the model saw it: at the end of its input after a rollback, after the tool results for an
APPEND, after the answer for an APPEND on a final answer. Why persisted rather than shown once and dropped:

* the history is exactly what the model saw, so a transcript can be audited, and a run resumed or forked from
  any checkpoint (DESIGN §3) continues from the same context;
* it is what :func:`~critic_guard_langgraph.graph.guard_graph` does for any graph, so both integrations behave
  alike.

A note never sits between an assistant tool call and its results: it is only added at the end of a history whose
tool calls are all answered (:func:`~critic_guard_langgraph.messages.note_index`); otherwise the intervention
happens silently and a warning is logged (create_agent never produces that case).

State. The counters live in one private record (:class:`GuardRun`, ``PrivateStateAttr``: in the checkpoint, not
in the agent's input or output), written by the model node with its messages: the run id, the step index, the
interventions so far and the step of the last one, a pending APPEND warning, and the run's input. Not the runtime
context: it often holds credentials, so its fields are added to the task in process at each use and never reach the
checkpoint (docs/telemetry.md, "What the store keeps"). A run is one agent invocation:
``before_agent`` starts it in the guard's store, ``after_agent`` ends it (a run that raises stays open in the store).

Pilots. At a production run's first flag the middleware forks shadow branches from the checkpoint the model node
runs from (the state before this step's model call) and gives them the proposal under judgement: a branch
re-enters the model node, takes production's proposal instead of sampling a new one (a second sample would break
the shared prefix of DESIGN §3), applies its arm's decision to it, and runs on by itself from there. A branch copies
the graph state, not the world: the middleware's own ``wrap_tool_call`` lets a branch run only the tools declared in
``shadow_tools`` and stops it before any other (deny by default, :mod:`critic_guard_langgraph.shadow`); a stopped
branch raises again at its next model call, and its runner excludes the pair (docs/pilot-design.md, "What runs in a
shadow branch"). A guard that never forks (modes off, observe, on; the full design) gets the middleware without
the gate (:class:`_WithoutToolGate`), so its agent's tool calls are not wrapped at all.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final, Generic, Literal, NotRequired, Self, TypeVar, cast

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ContextT,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    PrivateStateAttr,
    ResponseT,
)
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.pregel import Pregel
from langgraph.types import Command
from typing_extensions import TypedDict, override

from critic_guard.guard import CriticGuard, StepReview
from critic_guard.policy import Decision
from critic_guard.store.base import PairKind
from critic_guard.types import Action, Arm, Mode, StepContext, Verdict
from critic_guard_langgraph._runs import (
    action_of,
    areview_or_none,
    asafely,
    context_fields,
    instrumentation_parent,
    is_off,
    logger,
    review_or_none,
    run_arm,
    run_input,
    safely,
)
from critic_guard_langgraph.fork import ForkError, check_durability
from critic_guard_langgraph.messages import NeutralHistory, make_note, note_index
from critic_guard_langgraph.offpath import OffPathJudging
from critic_guard_langgraph.runner import ForkPoint, Judge, ShadowRunner, call_judge
from critic_guard_langgraph.running_graph import RunningGraphs
from critic_guard_langgraph.settings import build_guard, check_outcomes
from critic_guard_langgraph.shadow import ShadowBranch, ShadowTools, ToolSafety, tool_names
from critic_guard_langgraph.streaming import (
    StreamProposals,
    aannounce,
    announce,
    held_from_stream,
    withdrawn_event,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from langgraph.runtime import Runtime

    from critic_guard.telemetry.tracing import GuardTelemetry

__all__ = ["CriticGuardMiddleware", "CriticGuardState", "GuardRun"]

RECORD: Final = "critic_guard"


class GuardRun(TypedDict):
    """This middleware's record of the current run, kept in the agent's state (one channel, written as a whole)."""

    run_id: str | None  # None once the run has ended (or when starting it failed): nothing is judged
    arm: str
    task: dict[str, Any]  # the run's input only (see _task): the runtime context is never checkpointed
    step: int  # 0-based index of the next model step; a retry after a rollback keeps it
    interventions: int
    last_intervention_step: int | None
    warning: str | None  # an APPEND warning for the model call after the tool results
    flag_step: NotRequired[int | None]  # pilots: the step of the run's first flag (where it forked, if it did)


class CriticGuardState(AgentState[ResponseT]):
    """Private state of :class:`CriticGuardMiddleware` (hidden from the agent's input and output schemas).

    One record instead of a channel per counter: every channel costs LangGraph a little on every superstep.
    """

    critic_guard: NotRequired[Annotated[GuardRun | None, PrivateStateAttr]]


class CriticGuardMiddleware(AgentMiddleware[CriticGuardState[ResponseT], ContextT, ResponseT]):
    """Judge each proposed step of a ``create_agent`` agent and intervene as the guard's policy says.

    One object is the whole set-up, like LangChain's built-in middlewares:

    Example:
        ```python
        guard = CriticGuardMiddleware(my_critic, mode="on", tau=0.6, action="rollback")
        agent = create_agent(model, tools, middleware=[guard])
        ```

    A pilot needs nothing more (no second call): at a run's first flag the middleware finds the compiled agent that
    holds it and forks through the run's own checkpointer (:mod:`critic_guard_langgraph.running_graph`), in process
    and on the Agent Server alike. ``close()`` (or ``await aclose()``) finishes the branches and writes in flight.

    Args:
        critic: the critic (any function ``StepContext -> p_fail``, a ``Verdict`` or ``(p_fail, rationale)``, sync
            or async, or a :class:`~critic_guard_langgraph.ChatModelCritic`); or, for advanced use, a ready
            :class:`~critic_guard.guard.CriticGuard` (then no guard setting may be given here).
        guard: the same as passing a ``CriticGuard`` as ``critic``.
        mode: ``off | observe | on | pilot | auto`` (default ``observe``).
        tau: flag a step when ``p_fail >= tau`` (default 0.6).
        action: ``rollback`` (default) or ``append``.
        judge: ``(task, final_state) -> bool`` (sync or async): whether a run succeeded; modes ``pilot`` and
            ``auto`` need it, or ``outcomes="external"``.
        outcomes: ``"external"``: a pilot's outcomes come from you, through ``guard.record_outcome(run_id, ok)``.
        shadow_tools: pilots: ``{tool name: ToolSafety}``, the tools a shadow branch may run (``READ_ONLY``,
            ``FORKED`` with ``fork_context``, or ``ToolSafety(emulate=...)``). Deny by default: any other tool stops
            the branch before it runs, and its pair is excluded with the reason (``guard.counters.shadow_stops``).
            Production runs are never gated.
        stream_proposals: how proposals reach ``stream_mode="messages"`` (:mod:`.streaming`). ``"live"`` (default):
            token by token as the model writes them; a proposal the guard withdraws has streamed already, and the
            guard names it in a custom stream event (``{"critic_guard": "withdrawn", "message_id": ...}``).
            ``"judged"``: where the guard may withdraw proposals (a ROLLBACK policy, an arm it acts on), its model
            calls are tagged ``nostream``, and only the accepted proposal streams, whole, when the model node ends.
        fork_context: pilots: ``context -> context``, a shadow branch's own copy of the runtime context. It must
            copy the world at the flag, before production moves on, so with it every step is judged on the path.
        judge_on_path: judge every step before it goes on, even where the verdict cannot act (mode ``observe``, an
            arm the guard does not act on). Default False: there the step goes on at once and the verdict, its row
            and any fork follow in the background (:mod:`.offpath`, docs/pilot-design.md).
        store: the store URL (``sqlite:///...``, ``postgresql://...``), None to persist nothing, or a ``Store``.
        arm: the arm runs belong to. Default: the arm the guard serves now (``guard.serve_arm()``: treatment in
            mode ``on``, control in ``observe``, ``serve`` in a pilot).
        telemetry: a ``GuardTelemetry`` (default: the global OpenTelemetry providers).
        **settings: any other field of ``GuardConfig`` (``agent_name``, ``critic_timeout_s``, ``serve``,
            ``capture_content``, ``alpha``, ...) or ``Policy`` (``min_step``, ``max_interventions``, ``cooldown``,
            ``feedback``, ``template``), or ``policy=Policy(...)`` whole.

    Raises:
        TypeError: an unknown setting, or settings beside a ready guard.
        ValueError: a setting out of range, or a set-up that cannot work (a pilot nothing would ever judge).
    """

    state_schema = CriticGuardState  # type: ignore[assignment]

    def __init__(
        self,
        critic: Any = None,
        *,
        guard: CriticGuard | None = None,
        mode: Mode | str | None = None,
        tau: float | None = None,
        action: Action | str | None = None,
        judge: Judge | None = None,
        outcomes: Literal["judge", "external"] | None = None,
        shadow_tools: Mapping[str, ToolSafety] | None = None,
        fork_context: Callable[[Any], Any] | None = None,
        arm: Arm | None = None,
        telemetry: GuardTelemetry | None = None,
        stream_proposals: StreamProposals = "live",
        judge_on_path: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__()
        if stream_proposals not in ("live", "judged"):
            raise ValueError(f"stream_proposals must be 'live' or 'judged', got {stream_proposals!r}")
        self.stream_proposals = stream_proposals
        given = {"mode": mode, "tau": tau, "action": action}
        settings.update({key: value for key, value in given.items() if value is not None})
        if isinstance(critic, CriticGuard):
            if guard is not None:
                raise TypeError("pass the CriticGuard once: as the first argument or as guard=, not both")
            critic, guard = None, critic
        if guard is not None:
            extra = {**settings, "critic": critic, "telemetry": telemetry}
            named = sorted(key for key, value in extra.items() if value is not None or key in settings)
            if named:
                raise TypeError(
                    f"{', '.join(named)}: these configure the guard, and a ready CriticGuard was given; set them on "
                    "the CriticGuard, or drop guard= and let the middleware build it"
                )
            self._owns_guard = False
        else:
            if critic is None:
                raise TypeError("CriticGuardMiddleware needs a critic: CriticGuardMiddleware(my_critic, mode=...)")
            guard = build_guard(critic, settings, telemetry=telemetry)
            self._owns_guard = True
        try:
            check_outcomes(guard, judge, outcomes)
        except ValueError:
            if self._owns_guard:
                guard.close()
            raise
        self.guard = guard
        self.arm = arm
        self.judge = judge
        self.fork_context = fork_context
        self.shadow_tools = ShadowTools(shadow_tools, on_stop=guard.count_shadow_stop)
        self.runner: ShadowRunner | None = (
            ShadowRunner(None, guard, judge=judge, fork_context=fork_context) if self._piloting else None
        )
        self._graphs = RunningGraphs(self)
        self.judge_on_path = judge_on_path or fork_context is not None
        self._offpath = OffPathJudging(
            workers=guard.config.background_workers, max_pending=guard.config.background_queue
        )
        self._flag_steps: dict[str, int | None] = {}  # runs judged off the path: their first flag, in process
        guard.on_close(self._drain, self._adrain)  # guard.close() alone also finishes the background verdicts
        self._histories = NeutralHistory()
        self._tools_seen: set[str] = set()  # tools already checked for the log-once warning about branch stops
        self._tools_lock = threading.Lock()
        if type(self) is CriticGuardMiddleware and not _forks(guard):
            self.__class__ = _WithoutToolGate  # no branches, nothing to gate: LangChain then wraps no tool call

    def attach(self, agent: Any) -> Any:
        """Deprecated, not needed: the middleware finds its agent at run time. Returns ``agent``.

        Kept so that existing ``agent = middleware.attach(create_agent(...))`` code runs unchanged: it tells the
        middleware which graph to resume instead of searching for it (branches still fork through the run's own
        checkpointer).
        """
        warnings.warn(
            "CriticGuardMiddleware.attach() is no longer needed: list the middleware in create_agent(middleware=[...]) "
            "and the pilot finds the running agent itself",
            DeprecationWarning,
            stacklevel=2,
        )
        self._graphs.seed(agent)
        if self.runner is not None and self.runner.graph is None:
            self.runner.graph = agent
        return agent

    # -- shutting down ----------------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Finish the shadow branches and the guard's queued writes, then close the guard if this middleware built
        it (a guard you passed in stays open: close it yourself). From async code: ``await aclose()``.

        Branches on an event loop that has stopped can never finish: their pairs are excluded with the reason.
        """
        self._drain(timeout)
        if self._owns_guard:
            self.guard.close()
        else:
            self.guard.wait_for_writes(timeout)

    def _drain(self, timeout: float | None = None) -> None:
        """Finish the background verdicts (they may still fork branches), then the branches."""
        self._offpath.close(timeout)
        if self.runner is not None:
            self.runner.close(timeout)

    async def _adrain(self) -> None:
        await self._offpath.adrain()  # first: a background verdict may still fork a branch
        if self.runner is not None:
            await self.runner.aclose()

    async def aclose(self) -> None:
        """Async :meth:`close`: await the verdicts and branches on this loop, then finish the writes off the loop."""
        await self._adrain()
        guard_aclose = getattr(self.guard, "aclose", None)
        if self._owns_guard and guard_aclose is not None:
            await guard_aclose()
        elif self._owns_guard:
            await asyncio.to_thread(self.guard.close)
        else:
            await asyncio.to_thread(self.guard.wait_for_writes, None)

    def wait(self, timeout: float | None = None, *, thread_id: str | None = None) -> bool:
        """Wait (sync code) for the work of the runs so far, without closing anything: the verdicts judged off the
        user's path, then the shadow branches they forked (only those of ``thread_id``'s runs, if given). True if
        all finished within ``timeout``. Read the store after this to see every step, pair and outcome of those
        runs (``await drain()`` from async code)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = self._offpath.wait(timeout, thread_id=thread_id)
        if self.runner is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished = self.runner.wait(left, thread_id=thread_id) and finished
        return finished

    async def drain(self, thread_id: str | None = None) -> None:
        """Async :meth:`wait`: await the background verdicts and the branches they forked (only ``thread_id``'s,
        if given); a pilot awaits each task's conversation this way before it counts the task done."""
        await self._offpath.adrain(thread_id)
        if self.runner is not None:
            await self.runner.drain(thread_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def background_failures(self) -> int:
        """Background verdicts, rows or forks (judging off the user's path) that raised or could never run: each
        logged; a run that lost its first-flag fork this way has no pair, never a biased one."""
        return self._offpath.failures

    @property
    def _piloting(self) -> bool:
        """Whether runs may fork (modes pilot and auto, fork design): the only case with branch bookkeeping."""
        return self.guard.config.mode in (Mode.PILOT, Mode.AUTO) and self.guard.config.design == "fork"

    @property
    def name(self) -> str:
        return "CriticGuardMiddleware"

    # -- run lifecycle ------------------------------------------------------------------------------------------

    @override
    def before_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """Start a run in the guard's store with fresh counters (the record of an earlier run may linger)."""
        if is_off(self.guard):
            return {RECORD: None} if state.get(RECORD) is not None else None
        arm = run_arm(self.guard, self.arm)
        task = run_input(state["messages"])
        info = runtime.execution_info
        run_id = safely(
            "start_run",
            self.guard.start_run,
            task=_task(task, runtime),
            arm=arm,
            conversation_id=None if info is None else info.thread_id,
            trace_parent=instrumentation_parent(),
            background=True,  # the writer thread records it, in order: no store call on the user's path
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
        """Async :meth:`before_agent`: nothing here blocks the loop (the run's start is handed to the guard's
        writer thread, docs/faults.md)."""
        return self.before_agent(state, runtime)

    @override
    def after_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """End the run in the store; keep the counters for inspection, drop a warning no model call consumed."""
        record = state.get(RECORD)
        if record is None or record["run_id"] is None:
            return None
        ok, production = None, _branch() is None
        if self._piloting and production and self.judge is not None:
            ok = safely("judge", self.judge, _task(record["task"], runtime), state, default=None)
            if inspect.isawaitable(ok):
                raise TypeError("an async judge needs the async API (ainvoke / astream)")
        run_id = record["run_id"]
        if run_id in self._flag_steps:  # after the run's background verdicts (its first flag is known only then)
            finish = functools.partial(self._finish, record, ok, production=production)
            self._offpath.submit(run_id, finish, thread_id=_thread_of(get_config()))
        else:
            self._finish(record, ok, production=production)
        return {RECORD: {**record, "run_id": None, "warning": None}}

    async def aafter_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_agent`: an async judge is awaited, a sync one runs in a worker thread (it may block,
        and nothing may block the event loop, docs/faults.md)."""
        record = state.get(RECORD)
        if record is None or record["run_id"] is None:
            return None
        ok, production = None, _branch() is None
        if self._piloting and production and self.judge is not None:
            ok = await asafely("judge", call_judge, self.judge, _task(record["task"], runtime), state, default=None)
        run_id = record["run_id"]
        if run_id in self._flag_steps:  # after the run's background verdicts (its first flag is known only then)
            end = functools.partial(self._finish, record, ok, production=production)

            async def finish() -> None:
                end()

            await self._offpath.asubmit(run_id, finish, fallback=end, thread_id=_thread_of(get_config()))
        else:
            self._finish(record, ok, production=production)
        return {RECORD: {**record, "run_id": None, "warning": None}}

    def _finish(self, record: GuardRun, ok: object, *, production: bool) -> None:
        """The run's end: the concordant pair of a pilot run never flagged, then ``end_run`` (see :meth:`_end`).

        Runs on the path, or, for a run judged off the path, as its last background job (no LangGraph config there:
        ``production`` says whether the run is a production run rather than a shadow branch).
        """
        run_id = record["run_id"]
        assert run_id is not None
        if run_id in self._flag_steps:
            record = cast("GuardRun", {**record, "flag_step": self._flag_steps.pop(run_id)})
        unknown_flag = self._offpath.failed(run_id)  # a background verdict failed before the run's first flag
        self._offpath.forget(run_id)
        if production:
            self._production_pilot(record, unknown_flag=unknown_flag)
        self._end(run_id, ok, production=production)

    def _end(self, run_id: str, ok: object, *, production: bool) -> None:
        """End the run with its outcome, if judged (outcome first, so it lands on the run's open span).

        Not a shadow branch's run: its runner judges the branch's final state and ends the run with the outcome.
        """
        self._histories.forget(run_id)
        if not production:
            return
        success = ok if isinstance(ok, bool) else None
        if ok is not None and success is None:
            logger.warning("critic-guard: the judge returned %r, not a bool; no outcome recorded", ok)
        safely(
            "end_run", self.guard.end_run, run_id, status="completed", success=success, background=True, default=None
        )

    def _production_pilot(self, record: GuardRun, *, unknown_flag: bool = False) -> None:
        """At the end of a production run of a pilot: open the concordant pair of a run never flagged.

        ``unknown_flag``: a verdict judged off the user's path failed before the run's first flag, so whether (and
        where) the run would have forked is unknown: counting it concordant could bias the pilot, so its pair is
        recorded excluded, with the reason (``status`` shows it).
        """
        if not self._piloting:
            return
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
                background=True,
                default=None,
            )
            if unknown_flag:
                reason = "a verdict judged off the user's path failed before the run's first flag (see the log)"
                safely("mark_incomplete", self.guard.mark_incomplete, run_id, reason, background=True, default=None)

    # -- judging ------------------------------------------------------------------------------------------------

    @override
    def wrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], ModelResponse[ResponseT]],
    ) -> ModelResponse[ResponseT] | ExtendedModelResponse[ResponseT]:
        """Judge each proposal of this step and intervene (see the module docstring)."""
        step = self._open(request)
        if step is None:
            return handler(request)
        response, review = self._fork_step(step)  # a branch's first step: production's proposal, the fork's decision
        held = self._held(step)
        while True:  # one proposal per turn: the first, then a retry after each ROLLBACK (bounded by the budget)
            if response is None:
                with held_from_stream(held):
                    response = handler(step.model_request())
                review = self._review(step, response) if self._on_path(step) else self._judge_later(step, response)
            if not step.apply(response, review):
                return step.result(response)
            announce(step.request.runtime, step.announcements)
            response = None

    @override
    async def awrap_model_call(
        self,
        request: ModelRequest[ContextT],
        handler: Callable[[ModelRequest[ContextT]], Awaitable[ModelResponse[ResponseT]]],
    ) -> ModelResponse[ResponseT] | ExtendedModelResponse[ResponseT]:
        """Async :meth:`wrap_model_call`: the critic is awaited (with the guard's timeout) on the event loop."""
        step = self._open(request)
        if step is None:
            return await handler(request)
        response, review = self._fork_step(step)  # a branch's first step: production's proposal, the fork's decision
        held = self._held(step)
        while True:  # one proposal per turn: the first, then a retry after each ROLLBACK (bounded by the budget)
            if response is None:
                with held_from_stream(held):
                    response = await handler(step.model_request())
                if self._on_path(step):
                    review = await self._areview(step, response)
                else:
                    review = await self._ajudge_later(step, response)
            if not step.apply(response, review):
                return step.result(response)
            await aannounce(step.request.runtime, step.announcements)
            response = None

    def _held(self, step: _ModelStep[ResponseT]) -> bool:
        """Whether this step's model calls are held from the messages stream: with ``stream_proposals="judged"``,
        where the guard may withdraw a proposal (a ROLLBACK policy, on an arm it acts on). Observe mode and a
        pilot's control arm stream like the unguarded agent."""
        return (
            self.stream_proposals == "judged"
            and self.guard.policy.action is Action.ROLLBACK
            and self.guard.acts(Arm(step.record["arm"]))
        )

    def _open(self, request: ModelRequest[ContextT]) -> _ModelStep[ResponseT] | None:
        """This step's bookkeeping, or None when the run is not tracked (mode off, no run started, run ended)."""
        record = request.state.get(RECORD)
        if not isinstance(record, dict) or record.get("run_id") is None or is_off(self.guard):
            return None
        branch = _branch() if self._piloting else None
        if branch is not None:
            branch.stop.check()  # stopped by the tool gate (another middleware may have swallowed it): no more work
        elif self._piloting:
            self._warn_stopping_tools(request)
        step: _ModelStep[ResponseT] = _ModelStep(
            request, cast("GuardRun", dict(record)), request.state["messages"], branch
        )
        warning = step.record["warning"]
        if warning:  # an APPEND at the previous step: shown after its tool results, ahead of this model call
            step.shown += _placeable(make_note(warning, _note_key(step.record)), step.messages)
            step.record["warning"] = None
        return step

    def _review(self, step: _ModelStep[ResponseT], response: ModelResponse[ResponseT]) -> StepReview | None:
        ctx = step.context(response, self._histories)
        if ctx is None:
            return None
        review = review_or_none(self.guard, ctx, *step.budget())
        self._first_flag(step, review, response, get_config(), asynchronous=False)
        return review

    async def _areview(self, step: _ModelStep[ResponseT], response: ModelResponse[ResponseT]) -> StepReview | None:
        ctx = step.context(response, self._histories)
        if ctx is None:
            return None
        review = await areview_or_none(self.guard, ctx, *step.budget())
        self._first_flag(step, review, response, get_config(), asynchronous=True)
        return review

    # -- judging off the user's path (see .offpath) ---------------------------------------------------------------

    def _on_path(self, step: _ModelStep[ResponseT]) -> bool:
        """Whether this step waits for its verdict: where the verdict may act (mode on, the treatment arm of a
        pilot or of auto), in shadow branches, with a ``fork_context`` (it copies the world at the flag, before
        production moves on) or ``judge_on_path``. Elsewhere the verdict cannot change what the user gets."""
        return self.judge_on_path or step.branch is not None or self.guard.acts(Arm(step.record["arm"]))

    def _later(
        self, step: _ModelStep[ResponseT], response: ModelResponse[ResponseT]
    ) -> tuple[str, StepContext, _ModelStep[ResponseT], dict[str, Any]] | None:
        """What a background verdict needs, taken now: the critic's view, a frozen copy of the step, the config
        (which also names the thread, so a pilot can await one conversation's verdicts)."""
        ctx = step.context(response, self._histories)
        if ctx is None:
            return None
        config = get_config()
        if self._piloting:  # a run that could not fork fails here, on the user's path, as it would at its flag
            self._fork_point(step.request.runtime, config)
        self._flag_steps.setdefault(ctx.run_id, step.record.get("flag_step"))
        record = cast("GuardRun", dict(step.record))
        frozen: _ModelStep[ResponseT] = _ModelStep(step.request, record, step.messages, None)
        return ctx.run_id, ctx, frozen, cast("dict[str, Any]", config)

    def _judged(
        self,
        frozen: _ModelStep[ResponseT],
        review: StepReview | None,
        response: ModelResponse[ResponseT],
        config: dict[str, Any],
        *,
        asynchronous: bool,
    ) -> None:
        """A background verdict's first-flag work, on the run's in-process record (the graph state moved on).

        None after an earlier job of the run failed: where its first flag was is unknown, so the run forks no
        branch at a later step (its pair is recorded excluded at the run's end, :meth:`_production_pilot`).
        """
        run_id = frozen.record["run_id"]
        assert run_id is not None
        if self._offpath.failed(run_id):
            return
        frozen.record["flag_step"] = self._flag_steps.get(run_id)
        try:
            self._first_flag(frozen, review, response, config, asynchronous=asynchronous)
        finally:
            self._flag_steps[run_id] = frozen.record["flag_step"]

    def _judge_later(self, step: _ModelStep[ResponseT], response: ModelResponse[ResponseT]) -> StepReview | None:
        """Queue the step's verdict (same context, proposal and checkpoint as on the path); the step goes on."""
        later = self._later(step, response)
        if later is None:
            return None
        run_id, ctx, frozen, config = later
        budget = frozen.budget()

        def job() -> None:
            review = review_or_none(self.guard, ctx, *budget)
            self._judged(frozen, review, response, config, asynchronous=False)

        self._offpath.submit(run_id, job, thread_id=_thread_of(config))
        return None  # no verdict yet: the step goes on as the unguarded agent's would

    async def _ajudge_later(self, step: _ModelStep[ResponseT], response: ModelResponse[ResponseT]) -> StepReview | None:
        """Async :meth:`_judge_later`: the verdict is a task on this loop (awaited by ``aclose``)."""
        later = self._later(step, response)
        if later is None:
            return None
        run_id, ctx, frozen, config = later
        budget = frozen.budget()

        async def job() -> None:
            review = await areview_or_none(self.guard, ctx, *budget)
            self._judged(frozen, review, response, config, asynchronous=True)

        def in_a_thread() -> None:  # if this loop ends first (see OffPathJudging.asubmit): a branch then runs sync
            review = review_or_none(self.guard, ctx, *budget)
            self._judged(frozen, review, response, config, asynchronous=False)

        await self._offpath.asubmit(run_id, job, fallback=in_a_thread, thread_id=_thread_of(config))
        return None

    # -- pilots ---------------------------------------------------------------------------------------------------

    def _warn_stopping_tools(self, request: ModelRequest[ContextT]) -> None:
        """Log once per tool which of the agent's tools will stop shadow branches (undeclared in ``shadow_tools``)."""
        names = tool_names(request.tools)
        if self._tools_seen.issuperset(names):
            return
        with self._tools_lock:
            new = [name for name in names if name not in self._tools_seen]
            self._tools_seen.update(new)
        stopping = self.shadow_tools.stoppers(new, fork_context=self.fork_context is not None)
        if stopping:
            logger.warning(
                "critic-guard: shadow branches of this pilot stop before these tools, and their pairs are excluded: "
                "%s. Declare each tool that is safe to run in a branch: CriticGuardMiddleware(guard, shadow_tools="
                "{name: READ_ONLY | FORKED | ToolSafety(emulate=...)}) (docs/pilot-design.md)",
                ", ".join(f"{name} ({why})" for name, why in stopping.items()),
            )

    def _first_flag(
        self,
        step: _ModelStep[ResponseT],
        review: StepReview | None,
        proposal: ModelResponse[ResponseT],
        config: Any,
        *,
        asynchronous: bool,
    ) -> None:
        """At a production run's first flag in a pilot: fork the other arm into a shadow branch (an A/B pair), and
        for ``aa_fraction`` of runs a second branch of the served arm (an A/A pair: rerun noise).

        The run remembers its first flag (``flag_step``) whether or not it forked, so that it neither forks twice
        nor counts as never flagged.
        """
        record = step.record
        if not self._piloting or step.branch is not None or review is None or not review.decision.flagged:
            return
        if record.get("flag_step") is not None:
            return
        record["flag_step"] = review.step
        prod = review.run_id
        ab, aa = self.guard.should_fork(prod), self.guard.should_fork_aa(prod)
        if not (ab or aa):
            return
        runtime = step.request.runtime
        fork, graph = self._fork_point(runtime, config)
        served = Arm(record["arm"])
        if ab:
            other = Arm.TREATMENT if served is Arm.CONTROL else Arm.CONTROL
            decision = Decision(True, Action.NONE, None, "control_arm")
            if other is Arm.TREATMENT and review.verdict is not None:  # what the treatment arm does at this step
                interventions, last = step.budget()
                decision = self.guard.policy.decide(
                    review.verdict, step=review.step, interventions=interventions, last_intervention_step=last
                )
            self._fork(record, review, proposal, (fork, graph), runtime, asynchronous, arm=other, decision=decision)
        if aa:  # the served arm again, doing at the fork step what production does
            self._fork(
                record,
                review,
                proposal,
                (fork, graph),
                runtime,
                asynchronous,
                arm=served,
                decision=review.decision,
                aa=True,
            )

    def _fork_point(self, runtime: Runtime[ContextT], config: Any) -> tuple[ForkPoint, Pregel[Any, Any, Any, Any]]:
        """Where a branch of this step forks (the checkpoint the model node runs from) and the graph to resume; raises
        :class:`ForkError` when the run cannot be forked (no checkpointer, no thread, ``durability="exit"``)."""
        check_durability(config)
        graph = self._graphs.running(config, runtime.store)  # the agent, with this run's own checkpointer
        info = runtime.execution_info
        if info is None or info.thread_id is None:
            raise ForkError("a pilot forks from checkpoints: run the agent on a thread (configurable.thread_id)")
        return ForkPoint(info.thread_id, info.checkpoint_id, info.task_id, config.get("recursion_limit")), graph

    def _fork(
        self,
        record: GuardRun,
        review: StepReview,
        proposal: ModelResponse[ResponseT],
        where: tuple[ForkPoint, Pregel[Any, Any, Any, Any]],
        runtime: Runtime[ContextT],
        asynchronous: bool,
        *,
        arm: Arm,
        decision: Decision,
        aa: bool = False,
    ) -> None:
        """Start one shadow branch of ``arm`` from the fork point (resuming the running graph given with it) and
        open its pair with the production run.

        The branch starts only if its run and pair are handed to the guard's writer thread (which writes them ahead
        of every write of the branch): ``begin_fork`` never raises and never touches the store on the user's path,
        and counts a fork it refuses.
        """
        prod, step = review.run_id, review.step
        fork, graph = where
        branch_id = uuid.uuid4().hex
        task = _task(record["task"], runtime)
        if aa:
            pair_id, control, treatment = f"{prod}~aa", prod, branch_id
        else:
            pair_id = prod
            control, treatment = (prod, branch_id) if arm is Arm.TREATMENT else (branch_id, prod)
        recorded = self.guard.begin_fork(
            pair_id=pair_id,
            branch_run_id=branch_id,
            arm=arm,
            control_run_id=control,
            treatment_run_id=treatment,
            parent_run_id=prod,
            fork_step=step,
            task=task,
            kind=PairKind.AA if aa else PairKind.AB,
            fork_checkpoint_id=fork.checkpoint_id,
            background=True,
        )
        if not recorded:
            return
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
            proposal=proposal,
        )
        runner = self.runner
        assert runner is not None  # made for modes pilot and auto
        if asynchronous:
            runner.asubmit(shadow, fork, task=task, context=runtime.context, graph=graph)
        else:
            runner.submit(shadow, fork, task=task, context=runtime.context, graph=graph)

    def _fork_step(self, step: _ModelStep[ResponseT]) -> tuple[ModelResponse[ResponseT] | None, StepReview | None]:
        """A shadow branch's first model call (the fork step): become the branch's run, and take production's
        proposal with the decision made at the fork. Elsewhere: (None, None), the model is asked."""
        branch, record = step.branch, step.record
        if branch is None or record["run_id"] == branch.run_id:
            return None, None
        if branch.proposal is None:
            raise ForkError(f"shadow branch {branch.run_id} carries no proposal to apply its arm's decision to")
        record["run_id"], record["arm"], record["flag_step"] = branch.run_id, branch.arm.value, branch.fork_step
        verdict = None if branch.p_fail is None else Verdict(branch.p_fail, branch.rationale, branch.label)
        decision = Decision(True, branch.action, branch.feedback, "fork")
        review = StepReview(branch.run_id, record["step"], verdict, decision, None, 0.0)
        safely("record_fork_step", self.guard.record_fork_step, review, default=None)
        return branch.proposal, review

    # -- the tool gate of shadow branches -------------------------------------------------------------------------

    @override
    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        """In a shadow branch, run only the tools declared in ``shadow_tools`` (see :mod:`.shadow`); production
        tool calls pass through untouched."""
        return self.shadow_tools.call(request, handler)

    @override
    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async :meth:`wrap_tool_call`."""
        return await self.shadow_tools.acall(request, handler)


class _WithoutToolGate(CriticGuardMiddleware[ResponseT, ContextT]):
    """The middleware of a guard that never forks (modes ``off``, ``observe``, ``on``; the ``full`` design).

    Why a subclass: LangChain wraps every tool call of an agent whose middleware overrides ``wrap_tool_call`` (it
    decides by the class), and traces the wrapper, which in async code costs two thread hops per tool call
    (measured with ``benchmarks/overhead.py --async``). Without branches there is nothing to gate, so this class
    keeps LangChain's own no-op hooks and the agent pays nothing for them.
    """

    wrap_tool_call = AgentMiddleware.wrap_tool_call
    awrap_tool_call = AgentMiddleware.awrap_tool_call


def _forks(guard: CriticGuard) -> bool:
    """Whether runs under ``guard`` may fork shadow branches (the only runs the tool gate acts on)."""
    return guard.config.mode in (Mode.PILOT, Mode.AUTO) and guard.config.design == "fork"


R = TypeVar("R")


@dataclass(slots=True)
class _ModelStep(Generic[R]):
    """One model node under the guard: a step's proposals (the first and any retries), and what the node returns.

    ``messages`` is the agent's history before this step; ``shown`` what the guard adds to it in this node (notes,
    and an answer kept by an APPEND on a final answer), ahead of the accepted proposal; ``announcements`` what stream
    consumers are told before the next model call (a withdrawn proposal's id, :mod:`.streaming`). ``record`` is a
    copy of the run's record, updated as the step goes and written back with the node's messages.
    """

    request: ModelRequest[Any]
    record: GuardRun
    messages: Sequence[BaseMessage]
    branch: ShadowBranch | None
    shown: list[BaseMessage] = field(default_factory=list)
    announcements: list[dict[str, Any]] = field(default_factory=list)  # for stream consumers (see .streaming)

    def model_request(self) -> ModelRequest[Any]:
        """The model's input: the request, with whatever the guard has shown in this step at its end."""
        if not self.shown:
            return self.request
        return self.request.override(messages=[*self.request.messages, *cast("list[AnyMessage]", self.shown)])

    def context(self, response: ModelResponse[R], histories: NeutralHistory) -> StepContext | None:
        """The critic's view of the proposal in ``response``, or None when there is no assistant message to judge."""
        proposal = _proposal(response)
        run_id = self.record["run_id"]
        if proposal is None or run_id is None:
            return None
        return StepContext(
            run_id=run_id,
            step=self.record["step"],
            messages=histories.view(run_id, [*self.messages, *self.shown, proposal]),
            task=_task(self.record["task"], self.request.runtime),
            arm=Arm(self.record["arm"]),
        )

    def budget(self) -> tuple[int, int | None]:
        """(interventions so far, step of the last one), as the policy should see them."""
        return self.record["interventions"], self.record["last_intervention_step"]

    def apply(self, response: ModelResponse[R], review: StepReview | None) -> bool:
        """Apply the review of ``response``'s proposal; True when the model must be asked again."""
        record = self.record
        proposal = _proposal(response)
        action = action_of(review)
        if review is None or proposal is None or action is Action.NONE:
            record["step"] += 1
            return False
        step = record["step"]
        record["interventions"] += 1
        record["last_intervention_step"] = step
        feedback = review.decision.feedback
        note = None if feedback is None else make_note(feedback, _note_key(record))
        if action is Action.ROLLBACK:  # the proposal is dropped (stream consumers are told); the retry is the same step
            self.announcements.append(withdrawn_event(proposal.id, run_id=record["run_id"], step=step))
            self.shown += _placeable(note, [*self.messages, *self.shown])
            return True
        record["step"] = step + 1  # APPEND
        if proposal.tool_calls:  # the warning waits for the tool results (see _open)
            record["warning"] = feedback
            return False
        kept = [*self.shown, *response.result]
        placed = _placeable(note, [*self.messages, *kept])
        if not placed:  # a silent warning on a final answer has nothing to show
            return False
        self.shown = [*kept, *placed]
        return True

    def result(self, response: ModelResponse[R]) -> ExtendedModelResponse[R]:
        """What the node returns: the notes and kept messages, the accepted proposal, and the updated record."""
        messages = [*self.shown, *response.result] if self.shown else response.result
        return ExtendedModelResponse(
            ModelResponse(result=messages, structured_response=response.structured_response),
            Command(update={RECORD: self.record}),
        )


def _thread_of(config: Any) -> str | None:
    """The thread a run's config names (a pilot awaits one conversation's background verdicts by it)."""
    thread = (config or {}).get("configurable", {}).get("thread_id")
    return None if thread is None else str(thread)


def _task(recorded: dict[str, Any], runtime: Runtime[Any]) -> dict[str, Any]:
    """The run's full task, in process: the recorded input and the runtime context's fields (critics and the judge
    see it whole; the store keeps what ``guard.task_record`` allows, the checkpoint never holds the context)."""
    return {**recorded, **context_fields(runtime.context)}


def _branch() -> ShadowBranch | None:
    """The shadow branch this run is, from its config (None for a production run)."""
    return ShadowBranch.from_config(get_config())


def _proposal(response: ModelResponse[Any]) -> AIMessage | None:
    """The assistant message a model response proposes (with structured output a tool message may follow it)."""
    return next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)


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
