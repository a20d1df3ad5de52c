"""The guard's metrics instruments (OTel metrics API), created once per meter.

Why metrics beside spans: traces answer "what happened in this run"; the metrics answer "how is this guard doing"
(score distribution, flag and intervention rates, critic errors, how the pilot's pairs fall into cells, the
monitor's wealth against its threshold, the lifecycle state) without querying traces. Attributes are kept
low-cardinality: guard key, arm, run role, action, cell, never a run id.

With the API's default (no meter provider configured) every instrument is a no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from opentelemetry import metrics

from critic_guard.telemetry import attributes as A

_Attrs = Mapping[str, str | bool | int | float]


class GuardMetrics:
    """The instruments of docs/telemetry.md ("Metrics"): verdicts, flags, interventions, critic errors, pairs, monitor,
    lifecycle."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._verdict_score = meter.create_histogram(
            A.METRIC_VERDICT_SCORE,
            unit="1",
            description="Critic verdicts: predicted probability that the run fails, per judged step.",
            explicit_bucket_boundaries_advisory=A.VERDICT_SCORE_BUCKETS,
        )
        self._flags = meter.create_counter(
            A.METRIC_FLAGS,
            unit="{flag}",
            description="Verdicts at or above tau at a step where intervening is allowed.",
        )
        self._interventions = meter.create_counter(
            A.METRIC_INTERVENTIONS, unit="{intervention}", description="Interventions applied, by action."
        )
        self._critic_errors = meter.create_counter(
            A.METRIC_CRITIC_ERRORS, unit="{error}", description="Critic calls that failed (no verdict), by error type."
        )
        self._pairs = meter.create_counter(
            A.METRIC_PAIRS, unit="{pair}", description="Completed (control, treatment) pairs, by cell n00/n01/n10/n11."
        )
        self._wealth = meter.create_gauge(
            A.METRIC_MONITOR_WEALTH, unit="1", description="Wealth of the sequential monitor's betting e-process."
        )
        self._threshold = meter.create_gauge(
            A.METRIC_MONITOR_THRESHOLD, unit="1", description="Wealth at which the monitor rejects (1/alpha)."
        )
        self._state = meter.create_gauge(
            A.METRIC_LIFECYCLE_STATE,
            unit="1",
            description="1 for the guard's current lifecycle state, 0 for the state it left (a state set).",
        )
        self._lock = threading.Lock()
        self._current_state: dict[str, str] = {}

    def verdict(self, p_fail: float, attrs: _Attrs) -> None:
        self._verdict_score.record(p_fail, attrs)

    def flag(self, attrs: _Attrs) -> None:
        self._flags.add(1, attrs)

    def intervention(self, attrs: _Attrs) -> None:
        self._interventions.add(1, attrs)

    def critic_error(self, attrs: _Attrs) -> None:
        self._critic_errors.add(1, attrs)

    def pair(self, guard_key: str, cell: str) -> None:
        self._pairs.add(1, {A.GUARD_KEY: guard_key, A.PAIR_CELL: cell})

    def monitor(self, guard_key: str, hypothesis: str, wealth: float, threshold: float | None) -> None:
        attrs = {A.GUARD_KEY: guard_key, A.MONITOR_HYPOTHESIS: hypothesis}
        self._wealth.set(wealth, attrs)
        if threshold is not None:
            self._threshold.set(threshold, attrs)

    def lifecycle(self, guard_key: str, state: str, previous: str | None = None) -> None:
        """Set ``state`` to 1, and to 0 both ``previous`` and the state this process last reported for the key.

        A state set rather than a numeric code: a dashboard can sum or filter by the state label, and a change of
        the state vocabulary does not silently change what a number means. Both old states are cleared because
        another replica may have made the transition this process last saw.
        """
        with self._lock:
            left = {previous, self._current_state.get(guard_key)} - {None, state}
            self._current_state[guard_key] = state
        for old in sorted(s for s in left if s is not None):
            self._state.set(0, {A.GUARD_KEY: guard_key, A.LIFECYCLE_STATE: old})
        self._state.set(1, {A.GUARD_KEY: guard_key, A.LIFECYCLE_STATE: state})
