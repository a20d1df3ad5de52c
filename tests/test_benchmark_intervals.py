"""The benchmarks' bootstrap intervals: estimates, pairing, and the tiny-sample cases smoke runs hit."""

from __future__ import annotations

import math

from benchmarks import intervals


def test_median_interval_brackets_the_median() -> None:
    x = [float(v) for v in range(1, 42)]
    got = intervals.median(x)
    assert got.estimate == 21.0
    assert 14.0 <= got.low < 21.0 < got.high <= 28.0


def test_paired_statistics_resample_whole_rows() -> None:
    x = [1.0, 5.0, 2.0, 9.0, 3.0, 7.0]
    doubled = [2 * v for v in x]
    ratio = intervals.ratio_of_medians(x, doubled)  # every resample keeps the pairs: always exactly 0.5
    assert (ratio.estimate, ratio.low, ratio.high) == (0.5, 0.5, 0.5)
    shifted = intervals.median_difference([v + 3.0 for v in x], x)
    assert (shifted.estimate, shifted.low, shifted.high) == (3.0, 3.0, 3.0)


def test_one_measurement_has_no_interval() -> None:
    got = intervals.median([4.0])
    assert got.estimate == 4.0 and math.isnan(got.low) and math.isnan(got.high)
    assert got.show() == "4.0 [n/a]"
    assert intervals.median([1.0, 3.0]).scaled(10).show(0) in {"20 [10, 30]", "20 [15, 25]"}


def test_a_target_is_met_only_by_the_whole_interval() -> None:
    assert intervals.Interval(1.2, 1.0, 1.4).at_most(1.5) == "met"
    assert intervals.Interval(1.2, 0.6, 2.8).at_most(1.5).startswith("undecided")
    assert intervals.Interval(3.3, 1.9, 8.5).at_most(1.5) == "NOT met"
    assert intervals.Interval(1.2, math.nan, math.nan).at_most(1.5) == "met (no interval)"
