"""``GuardCounters`` and the ``Tally`` that keeps them: what one guard did since it was created, in this process.

The tally hears every judged step as a :class:`~critic_guard.guard_events.GuardObserver` (verdicts, flags,
interventions, critic errors) and is told of the faults the guard survives (docs/faults.md): a store call that
failed, a verdict that came late, a critic call that queued, a listener or telemetry call that raised, a shadow
branch stopped, a fork not started. Each kind of fault is logged once, then only counted: an outage is an operating
condition, not a stream of tracebacks. The store keeps the full record; these are for a quick look (``status``,
tests, dashboards).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from critic_guard.critic_pool import describe_error
from critic_guard.guard_events import GuardObserver, StepReview
from critic_guard.types import Action, Verdict
from critic_guard.write_queue import WriteQueue

__all__ = ["GuardCounters", "Tally"]

logger = logging.getLogger("critic_guard")


@dataclass(frozen=True, slots=True)
class GuardCounters:
    """A snapshot of what the guard did since it was created (process-local; the store has the full record).

    ``late_verdicts``: verdicts that arrived after their step had gone on at the deadline (each step was also a
    critic error; the late verdict is never acted on). ``lost_steps``: step rows the store accepted but could not
    write (e.g. a value the database refused; other rows of the same batch are still written). It is the store's
    count, so guards sharing one store see the same number.
    """

    verdicts: int
    flags: int
    interventions: Mapping[Action, int]
    critic_errors: int
    store_errors: int
    listener_errors: int = 0
    telemetry_errors: int = 0
    late_verdicts: int = 0
    lost_steps: int = 0
    shadow_stops: int = 0  # shadow branches stopped before a tool they may not run (their pairs are excluded)
    store_deferred: int = 0  # run, outcome and pair writes handed to the background retry queue
    store_recovered: int = 0  # of those, written by a retry
    store_lost: int = 0  # writes that could not be made even by retrying (see CriticGuard.lost_writes)
    forks_skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # branches not started
    critic_queued: int = 0  # critic calls that waited for a free worker (raise critic_workers if this grows)

    @property
    def total_interventions(self) -> int:
        return sum(self.interventions.values())


_COUNTED = (
    "verdicts",
    "flags",
    "critic_errors",
    "store_errors",
    "listener_errors",
    "telemetry_errors",
    "late_verdicts",
    "shadow_stops",
    "critic_queued",
)
"""The :class:`GuardCounters` fields that are plain counts kept by the tally."""


class Tally(GuardObserver):
    """The live counts behind :class:`GuardCounters` (thread-safe). ``critic_name`` names the critic in logs."""

    def __init__(self, critic_name: str) -> None:
        self.critic_name = critic_name
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._interventions = dict.fromkeys((Action.ROLLBACK, Action.APPEND), 0)
        self._forks_skipped: Counter[str] = Counter()

    def _bump(self, name: str) -> int:
        """Add one to the count ``name``; return the new count (1: the first, to log once)."""
        with self._lock:
            self._counts[name] += 1
            return self._counts[name]

    def step_judged(self, review: StepReview) -> None:
        decision = review.decision
        if review.verdict is None:
            if self._bump("critic_errors") == 1:
                logger.warning(
                    "critic %r failed, failing open (logged once): %s", self.critic_name, review.critic_error
                )
            return
        with self._lock:
            self._counts["verdicts"] += 1
            self._counts["flags"] += decision.flagged
            if decision.action is not Action.NONE:
                self._interventions[decision.action] += 1

    def late(self, verdict: Verdict) -> None:
        """A verdict that came after its step went on: counted, never acted on (the step recorded a timeout)."""
        self._bump("late_verdicts")
        logger.debug(
            "critic %r answered after its deadline (p_fail=%.3f); not acted on", self.critic_name, verdict.p_fail
        )

    def queued(self) -> int:
        """A critic call waited for a worker; returns how many did so far."""
        return self._bump("critic_queued")

    def store_failed(self, exc: Exception) -> None:
        if self._bump("store_errors") == 1:  # one line: an outage is an operating condition, not a bug
            logger.warning("critic-guard: store call failed, the agent goes on (logged once): %s", describe_error(exc))
        logger.debug("critic-guard store call failed", exc_info=exc)  # the traceback

    def listener_failed(self) -> int:
        """A listener raised; returns how many listener failures there were so far."""
        return self._bump("listener_errors")

    def telemetry_failed(self, exc: Exception) -> None:
        if self._bump("telemetry_errors") == 1:
            logger.warning("critic-guard telemetry failed; the agent continues (logged once)", exc_info=exc)

    def shadow_stopped(self) -> None:
        self._bump("shadow_stops")

    def fork_skipped(self, reason: str) -> None:
        with self._lock:
            self._forks_skipped[reason] += 1

    def snapshot(self, *, lost_steps: int, writes: WriteQueue) -> GuardCounters:
        """The counts now, with the store's ``lost_steps`` and the write queue's own counts."""
        with self._lock:
            return GuardCounters(
                **{name: self._counts[name] for name in _COUNTED},
                interventions=MappingProxyType(dict(self._interventions)),
                lost_steps=lost_steps,
                store_deferred=writes.queued,
                store_recovered=writes.recovered,
                store_lost=len(writes.lost),
                forks_skipped=MappingProxyType(dict(self._forks_skipped)),
            )
