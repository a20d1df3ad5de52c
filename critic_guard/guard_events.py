"""What the guard tells the parts that watch it: counters, telemetry and the user's listeners.

The guard's parts (runs, steps, pairs, the lifecycle) report what they did once, to :class:`GuardEvents`, and each
watcher (a :class:`GuardObserver`) takes what it needs: the counters count verdicts
(:mod:`critic_guard.guard_counters`), the traces record spans (:mod:`critic_guard.guard_traces`), and
:class:`ListenerFanout` turns the events users see into :class:`GuardEvent` objects for their listeners. So no
method of the guard calls telemetry, counters and listeners one by one, and a new watcher is one more observer.

Observers run inline on the caller's path and must not raise: the traces and the listener fan-out log and count
their failures themselves (docs/telemetry.md; a watcher never breaks the agent).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from critic_guard.lifecycle import Transition
from critic_guard.policy import Decision
from critic_guard.store.base import PairUpdate, RunRecord
from critic_guard.telemetry.tracing import StepTrace
from critic_guard.types import Action, Verdict

__all__ = ["EventKind", "GuardEvent", "GuardEvents", "GuardObserver", "Listener", "ListenerFanout", "StepReview"]

logger = logging.getLogger("critic_guard")


@dataclass(frozen=True, slots=True)
class StepReview:
    """The guard's answer for one step: the verdict (None on critic error), the decision, and the critic latency."""

    run_id: str
    step: int
    verdict: Verdict | None
    decision: Decision
    critic_error: str | None
    latency_s: float

    @property
    def action(self) -> Action:
        return self.decision.action


class EventKind(StrEnum):
    """What a :class:`GuardEvent` reports."""

    VERDICT = "verdict"  # every review (``review.verdict`` is None after a critic error)
    INTERVENTION = "intervention"  # a review whose action is not NONE (also reported as a verdict)
    PAIR_COMPLETED = "pair_completed"  # a pair this guard completed (``update``)
    TRANSITION = "transition"  # a lifecycle transition this guard made (``transition``)


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """One event for listeners (telemetry, dashboards); exactly the field that matches ``kind`` is set."""

    kind: EventKind
    guard_key: str
    review: StepReview | None = None
    update: PairUpdate | None = None
    transition: Transition | None = None


Listener = Callable[[GuardEvent], object]
"""A callable that receives every :class:`GuardEvent`; it runs inline, so it must be quick and must not block."""


class GuardObserver:
    """A watcher of one guard. Every hook does nothing by default: override the ones you need; never raise."""

    def run_started(self, run: RunRecord, *, conversation_id: str | None, parent: Any) -> None:
        """A run was registered (``parent``: the caller's span or ``traceparent`` for a production run)."""

    def run_ended(self, run_id: str, status: str) -> None:
        """A run ended, after its outcome (if any) was recorded. May come again for the same run (retries)."""

    def outcome(self, run_id: str, success: bool) -> None:
        """An outcome that completed no pair (a completed pair reports its runs' outcomes itself)."""

    def step_recorded(self, review: StepReview, span: StepTrace | None, error: BaseException | None) -> None:
        """A step's row was handed to the store: a judged step, or the fork step of a shadow branch."""

    def step_judged(self, review: StepReview) -> None:
        """The critic was asked about a step (after :meth:`step_recorded`); not said of a fork step's copy."""

    def fork_checkpoint(self, pair_id: str, checkpoint_id: str) -> None:
        """A pair was opened at this checkpoint of its production run."""

    def pair_completed(self, update: PairUpdate) -> None:
        """This guard completed a pair (``update.transition``: the lifecycle transition it caused, if any)."""

    def transition(self, transition: Transition) -> None:
        """The lifecycle state was set by hand (a pair's transition comes with :meth:`pair_completed`)."""


class GuardEvents(GuardObserver):
    """Tells every observer, in the order given."""

    def __init__(self, observers: Sequence[GuardObserver]) -> None:
        self.observers = tuple(observers)

    def run_started(self, run: RunRecord, *, conversation_id: str | None, parent: Any) -> None:
        for observer in self.observers:
            observer.run_started(run, conversation_id=conversation_id, parent=parent)

    def run_ended(self, run_id: str, status: str) -> None:
        for observer in self.observers:
            observer.run_ended(run_id, status)

    def outcome(self, run_id: str, success: bool) -> None:
        for observer in self.observers:
            observer.outcome(run_id, success)

    def step_recorded(self, review: StepReview, span: StepTrace | None, error: BaseException | None) -> None:
        for observer in self.observers:
            observer.step_recorded(review, span, error)

    def step_judged(self, review: StepReview) -> None:
        for observer in self.observers:
            observer.step_judged(review)

    def fork_checkpoint(self, pair_id: str, checkpoint_id: str) -> None:
        for observer in self.observers:
            observer.fork_checkpoint(pair_id, checkpoint_id)

    def pair_completed(self, update: PairUpdate) -> None:
        for observer in self.observers:
            observer.pair_completed(update)

    def transition(self, transition: Transition) -> None:
        for observer in self.observers:
            observer.transition(transition)


class ListenerFanout(GuardObserver):
    """The user's listeners: each hears the :class:`GuardEvent` objects of one guard.

    A listener that raises is logged (once) and reported to ``on_error`` (``counters.listener_errors``); the
    other listeners and the agent go on.
    """

    def __init__(self, guard_key: str, *, on_error: Callable[[], int]) -> None:
        self.guard_key = guard_key
        self._on_error = on_error  # counts the failure and returns how many there were so far
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()

    def add(self, listener: Listener) -> None:
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove(self, listener: Listener) -> None:
        with self._lock:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def step_judged(self, review: StepReview) -> None:
        if self._listeners:
            self._emit(EventKind.VERDICT, review=review)
            if review.decision.action is not Action.NONE:
                self._emit(EventKind.INTERVENTION, review=review)

    def pair_completed(self, update: PairUpdate) -> None:
        self._emit(EventKind.PAIR_COMPLETED, update=update)
        if update.transition is not None:
            self._emit(EventKind.TRANSITION, transition=update.transition)

    def transition(self, transition: Transition) -> None:
        self._emit(EventKind.TRANSITION, transition=transition)

    def _emit(
        self,
        kind: EventKind,
        *,
        review: StepReview | None = None,
        update: PairUpdate | None = None,
        transition: Transition | None = None,
    ) -> None:
        listeners = self._listeners
        if not listeners:
            return
        event = GuardEvent(kind, self.guard_key, review, update, transition)
        for listener in listeners:
            try:
                listener(event)
            except Exception as exc:
                if self._on_error() == 1:
                    logger.warning("critic-guard listener %r failed (logged once)", listener, exc_info=exc)
