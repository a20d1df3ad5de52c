"""PairedCounts: validation, counting pairs, and estimates by hand (including every undefined case)."""

from __future__ import annotations

import numpy as np
import pytest

from critic_guard.stats import Estimate, PairedCounts, UndefinedEstimateError

ALFWORLD = PairedCounts(118, 16, 9, 7)


def test_alfworld_estimates_match_the_paper_by_hand() -> None:
    # p = 134/150, r = 16/134, d = 9/16, p_star = d/(r+d), net = 7/150: the figures quoted from the paper.
    assert ALFWORLD.n == 150 and ALFWORLD.discordant == 25
    assert ALFWORLD.p.require() == pytest.approx(134 / 150)
    assert round(ALFWORLD.p.require(), 3) == 0.893
    assert ALFWORLD.r.require() == pytest.approx(16 / 134)
    assert round(ALFWORLD.r.require(), 3) == 0.119
    assert ALFWORLD.d.require() == 0.5625
    assert round(ALFWORLD.p_star.require(), 3) == 0.825
    assert ALFWORLD.net.require() == pytest.approx(7 / 150)
    assert ALFWORLD.d_over_r.require() == pytest.approx(0.5625 / (16 / 134))
    assert ALFWORLD.prefer_selection is True


def test_net_equals_p_r_minus_one_minus_p_d() -> None:
    p, r, d = ALFWORLD.p.require(), ALFWORLD.r.require(), ALFWORLD.d.require()
    assert ALFWORLD.net.require() == pytest.approx(p * r - (1 - p) * d)


def test_from_pairs_counts_each_cell_and_accepts_bools_and_bits() -> None:
    pairs = [(False, False), (0, 1), (1, 0), (True, True), (True, True), (0, 0)]
    assert PairedCounts.from_pairs(pairs).as_tuple() == (2, 1, 1, 2)
    assert PairedCounts.from_pairs([]).n == 0


@pytest.mark.parametrize("bad", [[(1, 2)], [(True,)], [("yes", True)], [None]])
def test_from_pairs_rejects_malformed_pairs(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="pair 0"):
        PairedCounts.from_pairs(bad)  # type: ignore[arg-type]


def test_validation_names_the_bad_cell() -> None:
    with pytest.raises(ValueError, match="n10 must be a non-negative integer, got -1"):
        PairedCounts(1, 2, -1, 4)
    with pytest.raises(TypeError, match="n00 must be a non-negative integer"):
        PairedCounts(1.0, 2, 3, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n11"):
        PairedCounts(1, 2, 3, True)
    with pytest.raises(TypeError, match="n01"):
        PairedCounts(1, "2", 3, 4)  # type: ignore[arg-type]


def test_numpy_integers_are_accepted_as_plain_ints() -> None:
    counts = PairedCounts(*np.array([3, 1, 2, 4]))
    assert counts.as_tuple() == (3, 1, 2, 4) and type(counts.n00) is int


def test_undefined_estimates_carry_reasons_never_zero() -> None:
    no_failures = PairedCounts(0, 0, 2, 8)
    assert no_failures.r == Estimate.undefined("no control failures: r (recovery rate) is undefined")
    assert no_failures.p_star.value is None and "r (recovery rate)" in (no_failures.p_star.reason or "")
    assert no_failures.prefer_selection is None
    assert no_failures.net.require() == -0.2

    no_successes = PairedCounts(5, 5, 0, 0)
    assert no_successes.d.reason == "no control successes: d (disruption rate) is undefined"
    assert no_successes.p.require() == 1.0

    no_flips = PairedCounts(4, 0, 0, 6)
    assert no_flips.p_star.reason == "no recoveries and no disruptions: p_star = d/(r+d) is undefined"
    assert no_flips.d_over_r.reason == "no recoveries (r = 0): d/r is undefined (0/0)"
    assert no_flips.prefer_selection is False

    only_disruptions = PairedCounts(4, 0, 3, 3)
    assert only_disruptions.d_over_r.reason == "no recoveries (r = 0): d/r is infinite"
    assert only_disruptions.prefer_selection is True

    empty = PairedCounts(0, 0, 0, 0)
    assert empty.p.reason == "no pairs: p is undefined"
    assert empty.net.reason == "no pairs: net effect is undefined"
    with pytest.raises(UndefinedEstimateError, match="no pairs"):
        empty.net.require()


def test_estimate_must_be_either_value_or_reason() -> None:
    with pytest.raises(ValueError):
        Estimate(None, None)
    with pytest.raises(ValueError):
        Estimate(0.5, "both")
    assert Estimate.defined(1).value == 1.0 and Estimate.defined(1).is_defined


def test_swapping_arms_exchanges_recoveries_and_disruptions() -> None:
    swapped = ALFWORLD.swapped()
    assert swapped.as_tuple() == (118, 9, 16, 7)
    assert swapped.net.require() == pytest.approx(-ALFWORLD.net.require())
    assert swapped.swapped() == ALFWORLD


def test_counts_add_cellwise() -> None:
    assert (PairedCounts(1, 2, 3, 4) + PairedCounts(10, 20, 30, 40)).as_tuple() == (11, 22, 33, 44)
