"""``GuardTraces``: the guard's OpenTelemetry spans and metrics, as an observer of its events (docs/telemetry.md).

It turns what the guard did (a run started or ended, a step judged, an outcome, a pair completed, a transition)
into calls on :class:`~critic_guard.telemetry.runs.RunTraces`, which knows which span belongs to which run. Every
call is guarded: a telemetry failure is logged once and counted (``counters.telemetry_errors``), never raised into
the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from critic_guard.guard_events import GuardObserver, StepReview
from critic_guard.lifecycle import Transition
from critic_guard.store.base import PairUpdate, RunRecord
from critic_guard.telemetry.runs import RunTraces
from critic_guard.telemetry.tracing import StepTrace

__all__ = ["GuardTraces"]

_T = TypeVar("_T")


class GuardTraces(GuardObserver):
    """The spans of one guard's runs. ``on_error`` counts (and logs) a telemetry failure; ``tau`` is the policy's
    threshold, recorded with each verdict."""

    def __init__(self, traces: RunTraces, *, critic_name: str, tau: float, on_error: Callable[[Exception], object]):
        self.traces = traces
        self.critic_name = critic_name
        self.tau = tau
        self._on_error = on_error

    def start_step(self, run_id: str, step: int, attempt: int) -> StepTrace | None:
        """Open the span of a step (made current during the critic call, so the critic's own spans nest under it)."""
        return self._safe(self.traces.start_step, run_id, step, attempt)

    def run_started(self, run: RunRecord, *, conversation_id: str | None, parent: Any) -> None:
        self._safe(
            self.traces.start_run,
            run.run_id,
            run.arm,
            conversation_id=conversation_id,
            parent_run_id=run.parent_run_id,
            fork_step=run.fork_step,
            parent=parent,
        )

    def run_ended(self, run_id: str, status: str) -> None:
        self._safe(self.traces.end_run, run_id, status)

    def outcome(self, run_id: str, success: bool) -> None:
        self._safe(self.traces.outcome, run_id, success)

    def step_recorded(self, review: StepReview, span: StepTrace | None, error: BaseException | None) -> None:
        if span is None:
            return
        decision = review.decision
        self._safe(
            self.traces.conclude_step,
            span,
            critic=self.critic_name,
            verdict=review.verdict,
            error_type=None if error is None else type(error).__qualname__,
            flagged=decision.flagged,
            action=decision.action,
            feedback=decision.feedback,
            tau=self.tau,
        )

    def fork_checkpoint(self, pair_id: str, checkpoint_id: str) -> None:
        self._safe(self.traces.fork_checkpoint, pair_id, checkpoint_id)

    def pair_completed(self, update: PairUpdate) -> None:
        self._safe(self.traces.pair_completed, update)

    def transition(self, transition: Transition) -> None:
        self._safe(self.traces.transition, transition.from_state.value, transition.to_state.value, transition.reason)

    def _safe(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            self._on_error(exc)
            return None
