"""Tango's score interval against an independent computation and closed forms, plus its properties.

The independent computation maximises the constrained likelihood numerically (no closed-form MLE) and finds the
interval ends with a grid scan and Brent's method, so it shares no code path with the implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import optimize, special, stats

from critic_guard.stats import PairedCounts, tango_interval, tango_statistic


def _brute_force_tango(b: int, c: int, n: int, level: float) -> tuple[float, float]:
    z = stats.norm.isf((1 - level) / 2)
    rest = n - b - c

    def constrained_mle(delta: float) -> float:
        # Maximise b log(q + delta) + c log q + rest log(1 - 2q - delta) over the disruption-cell probability q.
        lo, hi = max(0.0, -delta), (1.0 - delta) / 2.0

        def negative_loglik(q: float) -> float:
            return -float(special.xlogy(b, q + delta) + special.xlogy(c, q) + special.xlogy(rest, 1 - 2 * q - delta))

        return float(
            optimize.minimize_scalar(negative_loglik, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
        )

    def score(delta: float) -> float:
        q = constrained_mle(delta)
        return (b - c - n * delta) / math.sqrt(n * (2 * q + delta - delta**2))

    grid = np.linspace(-0.995, 0.995, 399)
    inside = np.array([abs(score(x)) <= z for x in grid])
    first, last = np.flatnonzero(inside)[[0, -1]]
    low = optimize.brentq(lambda x: score(x) - z, grid[first - 1], grid[first], xtol=1e-13)
    high = optimize.brentq(lambda x: score(x) + z, grid[last], grid[last + 1], xtol=1e-13)
    return low, high


@pytest.mark.parametrize(
    ("cells", "level"),
    [
        ((118, 16, 9, 7), 0.95),  # the ALFWorld pilot
        ((1, 1, 7, 12), 0.95),  # Bentur et al. (2009), as in Fagerland et al. (2014)
        ((794, 150, 86, 570), 0.95),  # n = 1600 approval-rating table from Agresti's textbooks
        ((20, 0, 4, 26), 0.90),  # one empty discordant cell
        ((3, 5, 1, 2), 0.99),
    ],
)
def test_matches_brute_force_inversion_of_the_score_test(cells: tuple[int, int, int, int], level: float) -> None:
    counts = PairedCounts(*cells)
    interval = tango_interval(counts, level)
    low, high = _brute_force_tango(counts.n01, counts.n10, counts.n, level)
    assert interval.low == pytest.approx(low, abs=1e-7)
    assert interval.high == pytest.approx(high, abs=1e-7)
    assert (interval.level, interval.method) == (level, "Tango score")


def test_alfworld_interval_contains_zero() -> None:
    interval = tango_interval(PairedCounts(118, 16, 9, 7))
    assert round(interval.low, 4) == -0.0198 and round(interval.high, 4) == 0.1160
    assert 0.0 in interval


def test_no_discordant_pairs_has_the_closed_form_bound() -> None:
    # With b = c = 0 the constrained MLE is q = max(0, -delta), so Z = -sqrt(n |delta| / (1 - |delta|)) sign(delta)
    # and the ends solve |delta| / (1 - |delta|) = z^2 / n: delta = +-z^2 / (n + z^2).
    z2 = stats.norm.isf(0.025) ** 2
    interval = tango_interval(PairedCounts(4, 0, 0, 6))
    assert interval.high == pytest.approx(z2 / (10 + z2), abs=1e-12)
    assert interval.low == pytest.approx(-z2 / (10 + z2), abs=1e-12)


def test_all_pairs_one_way_reaches_the_edge() -> None:
    assert tango_interval(PairedCounts(0, 10, 0, 0)).high == 1.0
    assert tango_interval(PairedCounts(0, 0, 10, 0)).low == -1.0


def test_statistic_at_zero_is_the_asymptotic_mcnemar_statistic() -> None:
    counts = PairedCounts(118, 16, 9, 7)
    assert tango_statistic(counts, 0.0) == pytest.approx((16 - 9) / math.sqrt(25))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="no pairs"):
        tango_interval(PairedCounts(0, 0, 0, 0))
    with pytest.raises(ValueError, match="level"):
        tango_interval(PairedCounts(1, 1, 1, 1), level=95)
    with pytest.raises(ValueError, match="delta"):
        tango_statistic(PairedCounts(1, 1, 1, 1), 1.5)


cells = st.integers(min_value=0, max_value=80)
levels = st.sampled_from([0.8, 0.9, 0.95, 0.99])


@given(cells, cells, cells, cells, levels)
def test_interval_properties(a: int, b: int, c: int, d: int, level: float) -> None:
    counts = PairedCounts(a, b, c, d)
    if counts.n == 0:
        return
    interval = tango_interval(counts, level)
    net = counts.net.require()
    assert -1.0 <= interval.low <= net <= interval.high <= 1.0
    mirrored = tango_interval(counts.swapped(), level)
    assert mirrored.low == pytest.approx(-interval.high, abs=1e-9)
    assert mirrored.high == pytest.approx(-interval.low, abs=1e-9)
    wider = tango_interval(counts, 0.995)
    assert wider.low <= interval.low + 1e-12 and interval.high <= wider.high + 1e-12
    # The ends are where |Z| = z (unless the interval reaches the edge of [-1, 1]).
    z = stats.norm.isf((1 - level) / 2)
    if interval.high < 1.0:
        assert tango_statistic(counts, interval.high) == pytest.approx(-z, abs=1e-6)
    if interval.low > -1.0:
        assert tango_statistic(counts, interval.low) == pytest.approx(z, abs=1e-6)


@given(cells, cells, cells, cells)
def test_zero_is_excluded_exactly_when_asymptotic_mcnemar_rejects(a: int, b: int, c: int, d: int) -> None:
    counts = PairedCounts(a, b, c, d)
    if counts.n == 0 or b + c == 0:
        return
    chi2 = (b - c) ** 2 / (b + c)
    critical = stats.chi2.isf(0.05, df=1)
    if abs(chi2 - critical) < 1e-9:
        return
    assert (0.0 not in tango_interval(counts)) == (chi2 > critical)
