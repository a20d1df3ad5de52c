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

Where each job lives. This module holds the hooks; what they share out lives in its own module: a model node's
proposals, notes and returned record (:mod:`.model_step`: where the feedback goes), the run's private record in the
agent's state (:mod:`.run_state`), judging on or off the user's path (:mod:`.judging`, queued by :mod:`.offpath`),
pilot forks at a run's first flag (:mod:`.forking`, planned by :mod:`critic_guard.fork_plan`), what stream
consumers see (:mod:`.streaming`: a withdrawn proposal is named in a custom stream event, and
``stream_proposals="judged"`` keeps proposals off the messages stream until accepted), and the tool gate of shadow
branches (:mod:`.shadow`). A guard that never forks (modes off, observe, on; the full design) gets the middleware
without the gate (:class:`_WithoutToolGate`), so its agent's tool calls are not wrapped at all.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Self

from langchain.agents.middleware.types import (
    AgentMiddleware,
    ContextT,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    ResponseT,
)
from langchain_core.messages import ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from typing_extensions import override

from critic_guard.guard import CriticGuard
from critic_guard.types import Action, Arm, Mode
from critic_guard_langgraph._runs import instrumentation_parent, is_off, run_arm, run_input, safely
from critic_guard_langgraph.background import WorkInFlight
from critic_guard_langgraph.forking import PilotForks, forks
from critic_guard_langgraph.judging import StepJudging
from critic_guard_langgraph.model_step import ModelStep
from critic_guard_langgraph.run_end import RunEnds
from critic_guard_langgraph.run_state import (
    RECORD,
    CriticGuardState,
    GuardRun,
    current_branch,
    new_record,
    open_run,
    task_of,
)
from critic_guard_langgraph.runner import Judge, ShadowRunner
from critic_guard_langgraph.settings import middleware_guard
from critic_guard_langgraph.shadow import ShadowTools, ToolSafety
from critic_guard_langgraph.streaming import StreamProposals, aannounce, announce, held_from_stream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from langgraph.runtime import Runtime

    from critic_guard.telemetry.tracing import GuardTelemetry

__all__ = ["CriticGuardMiddleware", "CriticGuardState", "GuardRun"]


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
        guard, self._owns_guard = middleware_guard(
            critic, guard, settings, telemetry=telemetry, judge=judge, outcomes=outcomes
        )
        self.guard = guard
        self.arm = arm
        self.judge = judge
        self.fork_context = fork_context
        self.shadow_tools = ShadowTools(shadow_tools, on_stop=guard.count_shadow_stop)
        self.runner: ShadowRunner | None = (
            ShadowRunner(None, guard, judge=judge, fork_context=fork_context) if forks(guard) else None
        )
        self._forks = PilotForks(self, guard, self.runner, self.shadow_tools, context_forked=fork_context is not None)
        self.judge_on_path = judge_on_path or fork_context is not None
        self._judging = StepJudging(guard, self._forks, on_path=self.judge_on_path)
        self._ends = RunEnds(guard, judge, self._forks, self._judging)
        self._work = WorkInFlight(self._judging.offpath, self.runner)
        guard.on_close(self._work.close, self._work.aclose)  # guard.close() alone also finishes them
        if type(self) is CriticGuardMiddleware and not forks(guard):
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
        self._forks.graphs.seed(agent)
        if self.runner is not None and self.runner.graph is None:
            self.runner.graph = agent
        return agent

    # -- shutting down ----------------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Finish the shadow branches and the guard's queued writes, then close the guard if this middleware built
        it (a guard you passed in stays open: close it yourself). From async code: ``await aclose()``.

        Branches on an event loop that has stopped can never finish: their pairs are excluded with the reason.
        """
        self._work.close(timeout)
        if self._owns_guard:
            self.guard.close()
        else:
            self.guard.wait_for_writes(timeout)

    async def aclose(self) -> None:
        """Async :meth:`close`: await the verdicts and branches on this loop, then finish the writes off the loop."""
        await self._work.aclose()
        if self._owns_guard:
            await self.guard.aclose()
        else:
            await asyncio.to_thread(self.guard.wait_for_writes, None)

    def wait(self, timeout: float | None = None, *, thread_id: str | None = None) -> bool:
        """Wait (sync code) for the work of the runs so far, without closing anything: the verdicts judged off the
        user's path, then the shadow branches they forked (only those of ``thread_id``'s runs, if given). True if
        all finished within ``timeout``. Read the store after this to see every step, pair and outcome of those
        runs (``await drain()`` from async code)."""
        return self._work.wait(timeout, thread_id=thread_id)

    async def drain(self, thread_id: str | None = None) -> None:
        """Async :meth:`wait`: await the background verdicts and the branches they forked (only ``thread_id``'s,
        if given); a pilot awaits each task's conversation this way before it counts the task done."""
        await self._work.drain(thread_id)

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
        return self._work.offpath.failures

    @property
    def name(self) -> str:
        return "CriticGuardMiddleware"

    # -- run lifecycle ------------------------------------------------------------------------------------------

    @override
    def before_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """Start a run in the guard's store with fresh counters; a run of this thread that never reached its end
        (it raised, or was left at an interrupt) is ended ``abandoned`` first."""
        self._ends.abandon_unended(state)
        return self._start(state, runtime)

    async def abefore_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`before_agent`: nothing here blocks the loop (the run's start is handed to the guard's
        writer thread, docs/faults.md)."""
        await self._ends.aabandon_unended(state)
        return self._start(state, runtime)

    def _start(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        if is_off(self.guard):
            return {RECORD: None} if state.get(RECORD) is not None else None
        arm = run_arm(self.guard, self.arm)
        task = run_input(state["messages"])
        info = runtime.execution_info
        run_id = safely(
            "start_run",
            self.guard.start_run,
            task=task_of(task, runtime),
            arm=arm,
            conversation_id=None if info is None else info.thread_id,
            trace_parent=instrumentation_parent(),
            background=True,  # the writer thread records it, in order: no store call on the user's path
            default=None,
        )
        return {RECORD: new_record(run_id, arm.value, task)}

    @override
    def after_agent(self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]) -> dict[str, Any] | None:
        """End the run in the store (:mod:`.run_end`); keep the counters for inspection, drop a warning no model
        call consumed."""
        record = open_run(state)
        if record is None:
            return None
        self._ends.end(record, state, runtime)
        return {RECORD: {**record, "run_id": None, "warning": None}}

    async def aafter_agent(
        self, state: CriticGuardState[ResponseT], runtime: Runtime[ContextT]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_agent`: an async judge is awaited, a sync one runs in a worker thread."""
        record = open_run(state)
        if record is None:
            return None
        await self._ends.aend(record, state, runtime)
        return {RECORD: {**record, "run_id": None, "warning": None}}

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
        response, review = self._forks.fork_step(step)  # a branch's first step: production's proposal, its decision
        held = self._held(step)
        while True:  # one proposal per turn: the first, then a retry after each ROLLBACK (bounded by the budget)
            if response is None:
                with held_from_stream(held):
                    response = handler(step.model_request())
                review = self._judging.review(step, response)
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
        response, review = self._forks.fork_step(step)  # a branch's first step: production's proposal, its decision
        held = self._held(step)
        while True:  # one proposal per turn: the first, then a retry after each ROLLBACK (bounded by the budget)
            if response is None:
                with held_from_stream(held):
                    response = await handler(step.model_request())
                review = await self._judging.areview(step, response)
            if not step.apply(response, review):
                return step.result(response)
            await aannounce(step.request.runtime, step.announcements)
            response = None

    def _held(self, step: ModelStep[ResponseT]) -> bool:
        """Whether this step's model calls are held from the messages stream: with ``stream_proposals="judged"``,
        where the guard may withdraw a proposal (a ROLLBACK policy, on an arm it acts on). Observe mode and a
        pilot's control arm stream like the unguarded agent."""
        return (
            self.stream_proposals == "judged"
            and self.guard.policy.action is Action.ROLLBACK
            and self.guard.acts(Arm(step.record["arm"]))
        )

    def _open(self, request: ModelRequest[ContextT]) -> ModelStep[ResponseT] | None:
        """This step's bookkeeping, or None when the run is not tracked (mode off, no run started, run ended)."""
        record = open_run(request.state)
        if record is None or is_off(self.guard):
            return None
        branch = self._forks.branch_of(request, current_branch()) if self._forks.piloting else None
        return ModelStep.open(request, record, branch)

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
