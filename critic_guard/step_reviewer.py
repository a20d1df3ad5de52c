"""``StepReviewer``: one judged step, from the critic call to the decision, the step row and the events.

The critic runs under a deadline (``critic_timeout_s``) in the guard's worker pool, or on its own event loop
thread for a native-async critic (:mod:`critic_guard.critic_pool`, :mod:`critic_guard.critic_loop`), so a slow,
hung or failing critic gives "no intervention" and a recorded ``critic_error`` (fail open, docs/faults.md). The
policy decides from the verdict; :class:`~critic_guard.arms.ArmRules` says whether the run's arm may act on it.
The step row goes to the store (not kept without one), and the step is told to the guard's observers (counters,
spans, listeners).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

from critic_guard.arms import ArmRules
from critic_guard.at_rest import error_text
from critic_guard.config import GuardConfig
from critic_guard.critic_loop import CriticLoop
from critic_guard.critic_pool import CriticPool, ajudge_with_timeout, describe_error, judge_with_timeout
from critic_guard.critics import Critic
from critic_guard.guard_counters import Tally
from critic_guard.guard_events import GuardObserver, StepReview
from critic_guard.guard_traces import GuardTraces
from critic_guard.policy import Decision, Policy, Reason
from critic_guard.run_recorder import RecentRuns
from critic_guard.store.base import StepRecord, Store
from critic_guard.store_writes import StoreWrites
from critic_guard.telemetry.content import ContentPolicy
from critic_guard.telemetry.tracing import StepTrace
from critic_guard.types import Action, Mode, StepContext, Verdict

__all__ = ["StepReviewer"]

logger = logging.getLogger("critic_guard")

_CRITIC_ERROR = Decision(False, Action.NONE, None, Reason.CRITIC_ERROR)
_MODE_OFF = Decision(False, Action.NONE, None, Reason.MODE_OFF)


def _mode_off(ctx: StepContext) -> StepReview:
    """A step in mode OFF: no critic call, nothing recorded."""
    return StepReview(ctx.run_id, ctx.step, None, _MODE_OFF, None, 0.0)


def _current(span: StepTrace | None) -> AbstractContextManager[object]:
    """Make the step span current around the critic call (only when it records: otherwise nothing to nest)."""
    return span.activate() if span is not None and span.is_recording else nullcontext()


class _Judgement:
    """One critic call, as a ``with`` block around it: opens the step (its attempt number and span, current during
    the call so the critic's own spans nest under it), times the call, takes its failure as a critic error, and on
    leaving concludes the step (``review``). The sync and async reviews differ only in the call inside."""

    def __init__(self, reviewer: StepReviewer, ctx: StepContext, interventions: int, last: int | None) -> None:
        self._reviewer = reviewer
        self._ctx = ctx
        self._interventions = interventions
        self._last_intervention_step = last
        self.verdict: Verdict | None = None
        self.review: StepReview

    def __enter__(self) -> _Judgement:
        self._attempt, self._span = self._reviewer.begin_step(self._ctx.run_id, self._ctx.step)
        self._current = _current(self._span)
        try:
            self._current.__enter__()
        except Exception as exc:  # the span cannot be made current: judge without nesting (a telemetry failure)
            self._reviewer.telemetry_failed(exc)
            self._current = nullcontext()
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        try:
            self._current.__exit__(kind, exc, tb)
        except Exception as raised:  # leaving the span's context failed: a failed call, as before
            exc = raised
        if exc is not None and not isinstance(exc, Exception):
            return False  # cancelled or interrupted: not the critic's failure
        latency = time.perf_counter() - self._started
        ctx, reviewer = self._ctx, self._reviewer
        decision = reviewer.decide(ctx, self.verdict, self._interventions, self._last_intervention_step)
        error = None if exc is None else describe_error(exc)
        self.review = StepReview(ctx.run_id, ctx.step, self.verdict, decision, error, latency)
        reviewer.record(self.review, self._attempt, self._span, exc)
        reviewer.events.step_judged(self.review)
        return True


class StepReviewer:
    """Judges the steps of one guard's runs (``step_store``: where step rows go, None to keep none)."""

    def __init__(
        self,
        critic: Critic,
        policy: Policy,
        config: GuardConfig,
        *,
        arms: ArmRules,
        recent: RecentRuns,
        writes: StoreWrites,
        step_store: Store | None,
        traces: GuardTraces,
        events: GuardObserver,
        tally: Tally,
        content: ContentPolicy,
    ) -> None:
        self.critic = critic
        self.policy = policy
        self.config = config
        self._arms = arms
        self._recent = recent
        self._writes = writes
        self._step_store = step_store
        self._traces = traces
        self.events = events
        self._tally = tally
        self._content = content
        self.pool = CriticPool(config.critic_workers, name=f"critic-guard-{config.agent_name}")
        self.loop = CriticLoop(f"critic-guard-{config.agent_name}-loop", on_blocked=self._loop_blocked)
        self._loop_block_warned = False
        self._warn_lock = threading.Lock()

    def review(self, ctx: StepContext, interventions: int, last_intervention_step: int | None) -> StepReview:
        if self.config.mode is Mode.OFF:
            return _mode_off(ctx)
        with _Judgement(self, ctx, interventions, last_intervention_step) as judgement:
            judgement.verdict = judge_with_timeout(
                self.critic,
                ctx,
                self.config.critic_timeout_s,
                self.pool,
                on_late=self._tally.late,
                on_queued=self._queued,
            )
        return judgement.review

    async def areview(self, ctx: StepContext, interventions: int, last_intervention_step: int | None) -> StepReview:
        if self.config.mode is Mode.OFF:
            return _mode_off(ctx)
        with _Judgement(self, ctx, interventions, last_intervention_step) as judgement:
            judgement.verdict = await ajudge_with_timeout(
                self.critic,
                ctx,
                self.config.critic_timeout_s,
                self.pool,
                self.loop,
                on_late=self._tally.late,
                on_queued=self._queued,
            )
        return judgement.review

    def begin_step(self, run_id: str, step: int) -> tuple[int, StepTrace | None]:
        """Number the attempt at this step and open its span."""
        attempt = self._recent.next_attempt(run_id, step)
        return attempt, self._traces.start_step(run_id, step, attempt)

    def decide(
        self, ctx: StepContext, verdict: Verdict | None, interventions: int, last_intervention_step: int | None
    ) -> Decision:
        """The policy's decision on the verdict (none after a critic error), as the run's arm takes it."""
        if verdict is None:
            return _CRITIC_ERROR
        decision = self.policy.decide(
            verdict, step=ctx.step, interventions=interventions, last_intervention_step=last_intervention_step
        )
        return self._arms.decide_for(decision, ctx.arm)

    def record_fork_step(self, review: StepReview) -> None:
        """See :meth:`critic_guard.guard.CriticGuard.record_fork_step`."""
        attempt, span = self.begin_step(review.run_id, review.step)
        self.record(review, attempt, span, None)

    def record(self, review: StepReview, attempt: int, span: StepTrace | None, exc: BaseException | None) -> None:
        """The step's row in the store, then its span (verdict or critic error, intervention).

        The row's rationale and error text follow the content switch, as the span's do (:mod:`critic_guard.at_rest`).
        """
        verdict, decision = review.verdict, review.decision
        if self._step_store is not None:
            record = StepRecord(
                run_id=review.run_id,
                step=review.step,
                attempt=attempt,
                p_fail=None if verdict is None else verdict.p_fail,
                label=None if verdict is None else verdict.label,
                rationale=None if verdict is None else self._content.text(verdict.rationale),
                flagged=decision.flagged,
                action=decision.action,
                reason=decision.reason,
                critic_error=None if exc is None else error_text(exc, self._content),
                latency_s=review.latency_s,
                created_at=time.time(),
            )
            self._writes.soft(self._step_store.add_step, record)
        self.events.step_recorded(review, span, exc)

    def telemetry_failed(self, exc: Exception) -> None:
        self._tally.telemetry_failed(exc)

    def _queued(self) -> None:
        """A critic call waited for a worker: counted (``counters.critic_queued``), warned once. It is not lost:
        its timeout starts when a worker starts it (:mod:`critic_guard.critic_pool`)."""
        if self._tally.queued() == 1:
            logger.warning(
                "critic-guard: all %d critic workers are busy; steps wait for one (the wait does not count against "
                "critic_timeout_s). Raise GuardConfig.critic_workers if this goes on (counted in "
                "counters.critic_queued; logged once)",
                self.pool.max_workers,
            )

    def _loop_blocked(self, lag_s: float) -> None:
        with self._warn_lock:
            first = not self._loop_block_warned
            self._loop_block_warned = True
        if first:
            logger.warning(
                "critic %r blocked its event loop for %.2fs (blocking code inside async def?); its steps go on at "
                "the deadline without a verdict. Set native_async = False on it to run it in the worker pool "
                "(logged once)",
                self.critic.name,
                lag_s,
            )

    def shutdown(self) -> None:
        self.pool.shutdown()
        self.loop.shutdown()
