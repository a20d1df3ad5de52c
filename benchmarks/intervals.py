"""Bootstrap 95% intervals for the timing benchmarks (medians, paired differences, ratios of medians).

Why the bootstrap: timings are skewed and heavy-tailed (a garbage collection, a neighbour's burst of CPU), so the
benchmarks report medians, and a median has no simple standard error. Why paired: the benchmarks interleave their
variants, so the i-th measurement of every variant shares the same moment of machine load; resampling whole
repetitions (``paired=True``) keeps that pairing and the interval reflects the noise of the comparison, not of the
machine's drift. Percentile intervals from :func:`scipy.stats.bootstrap`, seeded, so a table is reproducible from
its measurements.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import bootstrap

__all__ = ["Interval", "median", "median_difference", "paired", "ratio_of_medians"]

_RESAMPLES = 4000
_SEED = 20261207

Statistic = Callable[..., NDArray[np.float64]]
"""``statistic(*samples, axis) -> values``: vectorised along ``axis`` as :func:`scipy.stats.bootstrap` calls it."""


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate and its 95% bootstrap interval (NaN bounds with fewer than two measurements)."""

    estimate: float
    low: float
    high: float

    def scaled(self, factor: float) -> Interval:
        return Interval(self.estimate * factor, self.low * factor, self.high * factor)

    def at_most(self, target: float) -> str:
        """Whether the measured value is at most ``target``: ``met`` only when the whole interval is, ``NOT met``
        when the whole interval is above it, otherwise undecided at this sample size (the point estimate alone
        would call a coin flip a result)."""
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{'met' if self.estimate <= target else 'NOT met'} (no interval)"
        if self.high <= target:
            return "met"
        if self.low > target:
            return "NOT met"
        return "undecided (the interval spans the target: more repetitions)"

    def show(self, digits: int = 1) -> str:
        """``12.3 [11.9, 12.8]``, or the estimate alone when there is no interval."""
        if math.isnan(self.low) or math.isnan(self.high):
            return f"{self.estimate:.{digits}f} [n/a]"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def paired(statistic: Statistic, *samples: Sequence[float]) -> Interval:
    """``statistic`` of equally long, paired ``samples``, with its percentile bootstrap interval (rows resampled)."""
    arrays = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    estimate = float(statistic(*arrays, axis=-1))
    if len(arrays[0]) < 2:
        return Interval(estimate, math.nan, math.nan)
    with warnings.catch_warnings():  # identical resamples (tiny smoke runs) warn and give a point interval
        warnings.simplefilter("ignore")
        result = bootstrap(
            arrays,
            statistic,
            paired=True,
            vectorized=True,
            method="percentile",
            n_resamples=_RESAMPLES,
            random_state=np.random.default_rng(_SEED),
        )
    ci = result.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high))


def _median(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return np.median(x, axis=axis)


def _median_difference(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return np.median(x - y, axis=axis)


def _ratio_of_medians(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    return np.median(x, axis=axis) / np.median(y, axis=axis)


def median(x: Sequence[float]) -> Interval:
    """The median of ``x``."""
    return paired(_median, x)


def median_difference(x: Sequence[float], y: Sequence[float]) -> Interval:
    """The median of the paired differences ``x[i] - y[i]``."""
    return paired(_median_difference, x, y)


def ratio_of_medians(x: Sequence[float], y: Sequence[float]) -> Interval:
    """``median(x) / median(y)``, resampling the pairs ``(x[i], y[i])`` together."""
    return paired(_ratio_of_medians, x, y)
