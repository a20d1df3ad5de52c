"""``RunTraces``: which span belongs to which run of one guard (the glue between ``CriticGuard`` and the handles).

The guard is called from framework hooks that know run ids, not spans: ``start_run`` in one hook, ``review`` in
another (maybe on another thread), ``end_run`` in a third, an outcome possibly minutes later. This registry keeps
the open :class:`~critic_guard.telemetry.tracing.RunTrace` of each run, the ref of its latest step span (a shadow
branch forked at that step links to it), and, after a run ends, its span ref, so that a late outcome still lands
in the run's trace as a short child span. Both maps are bounded (oldest forgotten first): a run that never ends
costs one entry until it is pushed out, never unbounded memory.

Everything here is called by the guard with its own failure handling around it: telemetry never breaks a run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from opentelemetry import trace

from critic_guard.store.base import PairKind, PairRecord, PairUpdate
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.refs import SpanRef
from critic_guard.telemetry.tracing import GuardTelemetry, RunTrace, StepTrace
from critic_guard.types import Action, Arm, Mode, Verdict

__all__ = ["RunTraces"]

_MAX_OPEN = 10_000
_MAX_ENDED = 10_000


@dataclass(slots=True)
class _Open:
    trace: RunTrace
    step: StepTrace | None = None  # the latest judged step (where a shadow branch would link)


class RunTraces:
    """The spans of one guard's runs. ``telemetry`` is the guard's :class:`GuardTelemetry`."""

    def __init__(self, telemetry: GuardTelemetry, *, agent_name: str, guard_key: str, mode: Mode) -> None:
        self.telemetry = telemetry
        self.agent_name = agent_name
        self.guard_key = guard_key
        self.mode = mode
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._ended: OrderedDict[str, tuple[SpanRef | None, str]] = OrderedDict()  # run id -> (span ref, arm)

    # -- runs ---------------------------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        arm: Arm,
        *,
        conversation_id: str | None,
        parent_run_id: str | None,
        fork_step: int | None,
        parent: trace.Span | SpanRef | str | None = None,
    ) -> None:
        """Open the run's span; a run forked from another (``parent_run_id``) is a shadow branch of it."""
        with self._lock:
            if run_id in self._open:
                return  # starting a known run is harmless (e.g. a resumed run)
            production = None if parent_run_id is None else self._open.get(parent_run_id)
        link: SpanRef | None = None
        if production is not None:
            step = production.step
            at_step = step.ref if step is not None and (fork_step is None or step.step == fork_step) else None
            link = at_step or production.trace.ref
        shadow = parent_run_id is not None
        run = self.telemetry.start_run(
            run_id,
            self.agent_name,
            guard_key=self.guard_key,
            arm=arm,
            conversation_id=conversation_id,
            shadow=shadow,
            link_to=link,
            parent=None if shadow else parent,
            fork_step=fork_step,
            mode=self.mode,
        )
        with self._lock:
            self._open[run_id] = _Open(run)
            if len(self._open) > _MAX_OPEN:
                self._forget(*self._open.popitem(last=False))
        if production is not None:
            production.trace.set_shadow(run.ref, step=fork_step)

    def fork_checkpoint(self, run_id: str, checkpoint_id: str | None) -> None:
        """Record on an open run the checkpoint its shadow branch forked from."""
        entry = self._get(run_id)
        if entry is not None and checkpoint_id is not None:
            entry.trace.fork_checkpoint_id = checkpoint_id
            if entry.trace.is_recording:
                entry.trace.span.set_attribute(A.FORK_CHECKPOINT_ID, checkpoint_id)

    def end_run(self, run_id: str, status: str) -> None:
        """End the run's span. ``status`` is the store's: completed, incomplete or failed."""
        with self._lock:
            entry = self._open.pop(run_id, None)
        if entry is None:
            return
        kind = {"completed": A.STATUS_OK, "incomplete": A.STATUS_INCOMPLETE}.get(status, A.STATUS_ERROR)
        entry.trace.end(kind, error=status if kind == A.STATUS_ERROR else None)
        self._forget(run_id, entry)

    def _forget(self, run_id: str, entry: _Open) -> None:
        with self._lock:
            self._ended[run_id] = (entry.trace.ref, entry.trace.arm)
            if len(self._ended) > _MAX_ENDED:
                self._ended.popitem(last=False)

    def _get(self, run_id: str) -> _Open | None:
        with self._lock:
            return self._open.get(run_id)

    # -- steps --------------------------------------------------------------------------------------------------

    def start_step(self, run_id: str, step: int, attempt: int) -> StepTrace | None:
        """Open the span of a judged step (None when the run is unknown here, e.g. started by another process)."""
        entry = self._get(run_id)
        if entry is None:
            return None
        span = entry.step = entry.trace.start_step(step, attempt=attempt)
        return span

    def conclude_step(
        self,
        span: StepTrace,
        *,
        critic: str,
        verdict: Verdict | None,
        error_type: str | None,
        flagged: bool,
        action: Action,
        feedback: str | None,
        tau: float,
    ) -> None:
        """Record the verdict (or the critic error) and the intervention on the step span, then end it."""
        if verdict is not None:
            span.verdict(verdict, critic=critic, flagged=flagged, tau=tau)
        elif error_type is not None:
            span.critic_error(error_type)
        if action is not Action.NONE:
            span.intervention(action, feedback=feedback)
        span.end()

    # -- outcomes, pairs, the lifecycle --------------------------------------------------------------------------

    def outcome(self, run_id: str, success: bool, cell: str | None = None) -> None:
        """A run's outcome: an event on its span while open, else a short child span in its (ended) trace.

        Nothing for a run this process never traced (started elsewhere): there is no span to attach it to.
        """
        entry = self._get(run_id)
        if entry is not None:
            entry.trace.outcome(success, cell=cell)
            return
        with self._lock:
            ended = self._ended.get(run_id)
        if ended is not None:
            ref, arm = ended
            self.telemetry.record_outcome(
                ref, run_id=run_id, guard_key=self.guard_key, arm=arm, success=success, cell=cell
            )

    def pair_completed(self, update: PairUpdate) -> None:
        """Outcomes with their cell on the pair's runs, the pair counter, the monitor gauges, and any transition."""
        pair = update.pair
        cell = pair.cell
        for run_id, success in _outcomes_of(pair):
            self.outcome(run_id, success, cell)
        if cell is not None and pair.kind is PairKind.AB:
            self.telemetry.pair(self.guard_key, cell)
        monitor = update.guard.monitor
        threshold = monitor.threshold
        self.telemetry.monitor(self.guard_key, monitor.harm_wealth, threshold=threshold, hypothesis="harm")
        self.telemetry.monitor(self.guard_key, monitor.benefit_wealth, threshold=threshold, hypothesis="benefit")
        if update.transition is not None:
            entry = self._get(pair.pair_id)
            self.transition(
                update.transition.from_state.value,
                update.transition.to_state.value,
                update.transition.reason,
                on=None if entry is None else entry.trace,
            )

    def transition(self, from_state: str, to_state: str, reason: str, *, on: RunTrace | None = None) -> None:
        self.telemetry.transition(self.guard_key, from_state, to_state, reason, on=on)


def _outcomes_of(pair: PairRecord) -> list[tuple[str, bool]]:
    """(run id, success) of each distinct run of a completed pair."""
    if pair.control_success is None or pair.treatment_success is None:
        return []
    if pair.single_run:
        return [(pair.control_run_id, pair.control_success)]
    return [(pair.control_run_id, pair.control_success), (pair.treatment_run_id, pair.treatment_success)]
