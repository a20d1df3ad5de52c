"""``CriticGuard``: the framework-neutral core that integrations call once per agent step.

It ties a critic, a policy and a store together: ``review`` asks the critic about the proposed step (with a
timeout), lets the policy decide, records the verdict and decision, and returns a :class:`StepReview` that the
integration acts on. It never breaks the agent: a failing, slow or malformed critic gives "no intervention" plus a
recorded ``critic_error`` (fail open), and a failing store write is logged and counted, not raised. What must
survive checkpoints and forks (this run's interventions so far) lives in the agent's state and is passed in.

A facade over parts with one job each (wired in :mod:`critic_guard.guard_parts`): mode/arm rules (``arms``), the
cached lifecycle record (``lifecycle_view``, docs/lifecycle.md), pairs (``pair_book``, docs/pilot-design.md), runs
(``run_recorder``), steps (``step_reviewer``), the store and writes never lost (``store_choice``, ``store_writes``,
docs/faults.md). They report to ``guard_events``, which the counters, the spans and the user's listeners hear.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from critic_guard.arms import DISABLED_REASON
from critic_guard.at_rest import error_text
from critic_guard.closing import Closing, Drains
from critic_guard.config import GuardConfig
from critic_guard.critics import Critic, as_critic
from critic_guard.guard_counters import GuardCounters
from critic_guard.guard_events import EventKind, GuardEvent, Listener, StepReview
from critic_guard.guard_parts import GuardParts
from critic_guard.lifecycle import ACTOR_HUMAN, GuardRecord, GuardState, Transition
from critic_guard.policy import Policy
from critic_guard.store.base import PairDesign, PairKind, PairRecord, PairStatus, PairUpdate, Store
from critic_guard.store_choice import FROM_CONFIG, FromConfig, GuardStores
from critic_guard.telemetry.tracing import GuardTelemetry
from critic_guard.types import Arm, Mode, StepContext
from critic_guard.write_queue import LostWrite

__all__ = ["DISABLED_REASON", "CriticGuard", "EventKind", "GuardCounters", "GuardEvent", "Listener", "StepReview"]

logger = logging.getLogger("critic_guard")


class CriticGuard(Closing):
    """Judge each step of an agent run with a critic and decide whether to intervene.

    ``CriticGuard(critic, config, store=..., **overrides)``: ``overrides`` are :class:`GuardConfig` fields, e.g.
    ``CriticGuard(fn, mode="on", policy=Policy(tau=0.5))``. ``store``: not given, ``config.store``; a URL, that
    store; None, nothing persisted; a :class:`Store`, used and left open (:mod:`critic_guard.store_choice`).

    ``telemetry`` (default: a :class:`~critic_guard.telemetry.GuardTelemetry` on the global OpenTelemetry
    providers, a no-op until the application or ``configure_telemetry`` installs one) receives one trace per run,
    a span per judged step with the verdict and intervention events, outcomes, pair cells, monitor wealth and
    lifecycle transitions (docs/telemetry.md). Telemetry failures are logged and counted, never raised.
    """

    def __init__(
        self,
        critic: Critic | Callable[..., Any],
        config: GuardConfig | None = None,
        *,
        store: Store | str | FromConfig | None = FROM_CONFIG,
        telemetry: GuardTelemetry | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(store, str) or store is None:  # a URL or None overrides the GuardConfig field
            overrides["store"] = store
        base = config if config is not None else GuardConfig()
        self.config: GuardConfig = GuardConfig.model_validate({**dict(base), **overrides}) if overrides else base
        self.critic: Critic = as_critic(critic)
        self.policy: Policy = self.config.policy
        self.guard_key = f"{self.config.agent_name}/{self.critic.name}/{self.policy.fingerprint()}"
        stores = GuardStores.open(store, self.config)
        self.store: Store | None = stores.persistent  # None: nothing is persisted
        self.telemetry = telemetry or GuardTelemetry(capture_content=self.config.capture_content)
        self._closed = False
        self._drains = Drains()  # the integrations' background work, finished first by close() / aclose()
        self._parts = GuardParts.assemble(self.critic, self.policy, self.config, self.guard_key, stores, self.telemetry)
        if self.config.mode is Mode.AUTO:
            self._parts.lifecycle.refresh()  # warm the cache (and the statistics import) before the first step

    # -- modes and the lifecycle -------------------------------------------------------------------------------

    def acts(self, arm: Arm) -> bool:
        """Whether a run in ``arm`` may intervene: the single place that maps mode, lifecycle and arm to acting.

        ON acts on every arm; OFF and OBSERVE never act; PILOT acts on the treatment arm only; AUTO acts on the
        treatment arm while the lifecycle is pilot or enabled (when enabled, production runs *are* treatment runs,
        see :meth:`serve_arm`, and a shadow control must stay a control), and never once it is disabled.
        """
        return self._parts.arms.acts(arm)

    def serve_arm(self) -> Arm:
        """The arm a new production run follows now.

        ON: treatment. OFF/OBSERVE: control. PILOT: ``config.serve``. AUTO: ``config.serve`` during the pilot,
        treatment once enabled, control once disabled. The shadow branch of a pair runs the other arm.
        """
        return self._parts.arms.serve_arm()

    def should_fork(self, run_id: str | None = None) -> bool:
        """Whether a run's first flag should fork a shadow branch of the other arm (``design="fork"`` only).

        PILOT and AUTO-pilot: always. AUTO-enabled: for ``shadow_fraction`` of runs, so the monitor keeps learning
        (a shadow control beside the treatment production run). Otherwise never. With a ``run_id`` the coin is a
        hash of the guard key and the run id, so every replica (and a resumed run) decides the same way.
        """
        return self._parts.arms.should_fork(run_id)

    def should_fork_aa(self, run_id: str | None = None) -> bool:
        """Whether a flagged run also forks an A/A shadow (a second branch of the served arm, rerun noise).

        For ``aa_fraction`` of runs in PILOT and in AUTO while not disabled (``design="fork"`` only); the coin is
        independent of :meth:`should_fork`'s.
        """
        return self._parts.arms.should_fork_aa(run_id)

    def lifecycle(self) -> GuardRecord:
        """The guard's lifecycle record, read from the store now (state, monitor, counts, last transition)."""
        return self._parts.lifecycle.read()

    def set_state(
        self, state: GuardState | str, *, reason: str, actor: str = ACTOR_HUMAN, reset_monitor: bool = False
    ) -> Transition:
        """Override the lifecycle state (``critic-guard enable|disable``), atomically, with a recorded transition.

        Refused (:class:`~critic_guard.lifecycle.LifecycleError`) when it is the current state, or when a standing
        proof would revert it at the next pair, unless ``reset_monitor=True``, which starts fresh evidence at
        ``config.alpha`` (see :func:`critic_guard.lifecycle.override`).
        """
        return self._parts.lifecycle.set_state(state, reason=reason, actor=actor, reset_monitor=reset_monitor)

    def transitions(self) -> list[Transition]:
        """Every transition of this guard key, oldest first (from the store: all replicas' and humans')."""
        return self._parts.lifecycle.transitions()

    # -- pairs -------------------------------------------------------------------------------------------------

    def open_pair(
        self,
        pair_id: str,
        *,
        control_run_id: str,
        treatment_run_id: str,
        flagged: bool,
        fork_step: int | None = None,
        task_id: str | None = None,
        kind: PairKind | str = PairKind.AB,
        design: PairDesign | str | None = None,
        fork_checkpoint_id: str | None = None,
        background: bool = False,
    ) -> PairRecord:
        """Open a pair (idempotent on ``pair_id``, the production run id) and return it as stored (as given, still
        open, when the store could not take it now and the write was queued for a retry, or when ``background``
        handed it to the guard's writer thread: see :meth:`start_run`).

        ``design`` defaults to ``config.design``; ``task_id`` to the control run's. One run for both arms means
        a task never flagged in the fork design (concordant by construction); a flagged pair and a ``full``
        design pair need two runs. If the runs already have outcomes the pair completes at once.
        """
        return self._parts.pairs.open(
            pair_id,
            control_run_id=control_run_id,
            treatment_run_id=treatment_run_id,
            flagged=flagged,
            fork_step=fork_step,
            task_id=task_id,
            kind=kind,
            design=design,
            fork_checkpoint_id=fork_checkpoint_id,
            background=background,
        )

    def mark_incomplete(self, pair_id: str, reason: str, *, background: bool = False) -> None:
        """Exclude an open pair whose shadow branch could not finish (reported, never fed to the monitor).

        Idempotent; marking a complete pair raises :class:`~critic_guard.store.PairStateError`. Queued for a retry
        when the store cannot take it now (the pair is then excluded once the store is back).
        """
        self._parts.pairs.mark_incomplete(pair_id, reason, background=background)

    def count_shadow_stop(self) -> None:
        """Count a shadow branch stopped by the tool gate (``counters.shadow_stops``; its pair is excluded)."""
        self._parts.tally.shadow_stopped()

    def pairs(self, status: PairStatus | str | None = None) -> list[PairRecord]:
        """This guard's pairs, oldest first, optionally only those with one status."""
        return self._parts.pairs.pairs(status)

    def complete_pairs(self) -> list[PairUpdate]:
        """Complete every open pair of this guard whose runs have outcomes (e.g. after a crash between recording
        an outcome and completing its pair). Safe to run on any replica at any time."""
        return self._parts.pairs.complete_open()

    # -- listeners ---------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every :class:`GuardEvent` of this guard (inline: keep it quick).

        A listener that raises is logged (once) and counted in ``counters.listener_errors``; the agent goes on.
        """
        self._parts.listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ``ValueError`` if it was not added."""
        self._parts.listeners.remove(listener)

    # -- runs --------------------------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        run_id: str | None = None,
        task: Mapping[str, Any] | None = None,
        arm: Arm = Arm.CONTROL,
        parent_run_id: str | None = None,
        fork_step: int | None = None,
        conversation_id: str | None = None,
        trace_parent: Any = None,
        background: bool = False,
    ) -> str:
        """Register a run and return its id (a new uuid4 hex if none is given). Starting a known id is harmless.

        ``task`` is stored as JSON (non-JSON values as their ``str``), reduced to what may be kept at rest: its ids
        and the ``task_fields`` allowlist, or everything (redacted) with content capture on and no allowlist
        (:func:`~critic_guard.at_rest.task_record`). Its ``task_id`` (or ``id``) key becomes the run's ``task_id``,
        which pairs runs of the same task. A run with a ``parent_run_id`` is a shadow branch
        forked from that run at ``fork_step``: its trace links to the parent's span of that step.
        ``conversation_id`` (e.g. the LangGraph thread id) goes on the run span; ``trace_parent`` (an OTel span or
        a ``traceparent`` string) parents a production run's span when the caller's instrumentation does not make
        its span current (OpenInference).

        ``background=True`` (what the integrations pass on the user's path): the write goes to the guard's writer
        thread and this returns at once, without touching the store (docs/faults.md); it is applied in order with
        the guard's other writes, batched with neighbouring run starts and ends, and retried like any failed write.
        """
        return self._parts.runs.start(
            run_id=run_id,
            task=task,
            arm=arm,
            parent_run_id=parent_run_id,
            fork_step=fork_step,
            conversation_id=conversation_id,
            trace_parent=trace_parent,
            background=background,
        )

    def task_record(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``task`` this guard's store keeps (docs/telemetry.md, "What the store keeps")."""
        return self._parts.runs.task_record(task)

    def error_text(self, exc: BaseException) -> str:
        """The description of ``exc`` this guard's store keeps: its type alone with content capture off (the
        message may quote tool arguments), ``"Type: message"`` through the redaction hook with it on."""
        return error_text(exc, self.telemetry.content)

    def end_run(
        self, run_id: str, *, status: str = "completed", success: bool | None = None, background: bool = False
    ) -> list[PairUpdate]:
        """Mark a run ended, and record its outcome if ``success`` is given (returning the pair updates).

        ``status``: ``completed``, ``incomplete`` (a shadow branch stopped by the tool gate), ``failed`` or
        ``abandoned`` (see :meth:`abandon_run`, which also excludes the run's pairs). A store
        that cannot take the writes now gets them later (queued; the updates are then empty). ``background``: see
        :meth:`start_run` (the updates are then empty; the run's span ends once its outcome is written).
        """
        return self._parts.runs.end(run_id, status=status, success=success, background=background)

    def abandon_run(self, run_id: str, reason: str, *, background: bool = False) -> None:
        """End a run that will never reach its end (it raised, or its conversation went on without it) with status
        ``abandoned``, and exclude every open pair it is an arm of with ``reason``: without the run's outcome they
        could never complete, and counting them either way could bias the pilot (``status`` shows them)."""
        self._parts.pairs.exclude_open_of(run_id, reason, background=background)
        self._parts.runs.end(run_id, status="abandoned", success=None, background=background)

    def record_outcome(self, run_id: str, success: bool) -> list[PairUpdate]:
        """Record whether the run succeeded and complete every open pair of this guard that now has both outcomes.

        Idempotent: the same value again records nothing new (and completes any pair a crash left open); the
        other value raises :class:`~critic_guard.store.OutcomeConflictError`; an unknown run raises
        :class:`~critic_guard.store.UnknownRunError` (a ``KeyError``). Returns the pair updates this call made
        (empty when another replica completed the pair, or when the other arm's outcome is still missing, or when
        the store could not take the outcome now and it was queued for a retry).
        """
        return self._parts.runs.record_outcome(run_id, success)

    def begin_fork(
        self,
        *,
        pair_id: str,
        branch_run_id: str,
        arm: Arm,
        control_run_id: str,
        treatment_run_id: str,
        parent_run_id: str,
        fork_step: int,
        task: Mapping[str, Any] | None,
        kind: PairKind | str = PairKind.AB,
        fork_checkpoint_id: str | None = None,
        background: bool = False,
    ) -> bool:
        """Record a shadow branch before it starts: its run, and its (flagged) pair with the production run.

        ``background``: both writes go to the guard's writer thread (see :meth:`start_run`), in order, ahead of
        every write of the branch itself.

        True when the branch may start: both writes are in the store, or queued behind a busy store in order (the
        branch's own writes will queue behind them, so the pair completes once the store is back). False when they
        could not even be queued, or were refused: the branch must not start; it is counted in
        ``counters.forks_skipped`` with the reason and listed in :meth:`lost_writes` for the production run's task
        (its pair is missing, so a pilot runs that task again). Never raises.
        """
        return self._parts.forks.begin(
            pair_id=pair_id,
            branch_run_id=branch_run_id,
            arm=arm,
            control_run_id=control_run_id,
            treatment_run_id=treatment_run_id,
            parent_run_id=parent_run_id,
            fork_step=fork_step,
            task=task,
            kind=kind,
            fork_checkpoint_id=fork_checkpoint_id,
            background=background,
        )

    def wait_for_writes(self, timeout: float | None = None, *, task_id: str | None = None) -> bool:
        """Wait until every queued run, outcome and pair write (only ``task_id``'s, if given) is written or lost;
        True if within ``timeout``."""
        return self._parts.writes.wait(timeout, task_id=task_id)

    def lost_writes(self) -> tuple[LostWrite, ...]:
        """The run, outcome and pair writes this guard could not make, even by retrying (oldest first)."""
        return self._parts.writes.lost

    # -- steps -------------------------------------------------------------------------------------------------

    def review(
        self, ctx: StepContext, *, interventions: int = 0, last_intervention_step: int | None = None
    ) -> StepReview:
        """Judge the proposed step in ``ctx`` and decide. Never raises because of the critic."""
        return self._parts.steps.review(ctx, interventions, last_intervention_step)

    async def areview(
        self, ctx: StepContext, *, interventions: int = 0, last_intervention_step: int | None = None
    ) -> StepReview:
        """Async :meth:`review`: the critic never runs on the caller's event loop while a deadline is set.

        A native-async critic runs on the guard's own event loop thread and a sync one in the worker pool, so a
        critic that ignores cancellation or blocks its loop cannot hold the step past ``critic_timeout_s``
        (:mod:`critic_guard.critic_loop`). The step row is only queued here (the store writes it in the background).
        """
        return await self._parts.steps.areview(ctx, interventions, last_intervention_step)

    def record_fork_step(self, review: StepReview) -> None:
        """Record, in a shadow branch's own run, the fork step: the verdict judged in the production run and the
        decision the branch's arm takes there (no second critic call). Its span opens the branch's trace."""
        self._parts.steps.record_fork_step(review)

    # -- counters and closing ----------------------------------------------------------------------------------

    @property
    def counters(self) -> GuardCounters:
        """What this guard did since it was created (:class:`GuardCounters`)."""
        return self._parts.counters()

    def close(self) -> None:
        """Stop the worker pool, finish the queued writes (each within ``store_retry_s``), and close the store if
        this guard opened it. Idempotent."""
        if self._closed:
            return
        self._drains.run()
        self._closed = True
        self._parts.close()

    async def aclose(self) -> None:
        """Async :meth:`close`: await the integrations' async background work on this loop (``on_close(...,
        adrain)``), then finish the rest off the loop (nothing here blocks the event loop). Idempotent."""
        if self._closed:
            return
        await self._drains.arun()
        await asyncio.to_thread(self.close)

    def on_close(self, drain: Callable[[], object], adrain: Callable[[], Awaitable[object]] | None = None) -> None:
        """Have :meth:`close` call ``drain`` first (and :meth:`aclose` await ``adrain`` first): an integration's
        background work (verdicts judged off the user's path, their shadow branches) finishes while the critic pool
        and the store are still open."""
        self._drains.add(drain, adrain)

    def __repr__(self) -> str:
        return f"CriticGuard({self.guard_key!r}, mode={self.config.mode.value!r})"
