"""McNemar exact and mid-p p-values against exact fractions computed by hand, and their properties."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from critic_guard.stats import PairedCounts, mcnemar


def _tail(k: int, m: int) -> Fraction:
    """P(X <= k) for X ~ Binomial(m, 1/2), exactly."""
    return Fraction(sum(comb(m, i) for i in range(k + 1)), 2**m)


def _point(k: int, m: int) -> Fraction:
    return Fraction(comb(m, k), 2**m)


def test_bentur_table_by_hand() -> None:
    # Airway hyper-responsiveness data (Bentur et al. 2009) used by Fagerland, Lydersen & Laake (2013):
    # 1 and 7 discordant pairs. Exact: 2 * P(X <= 1) = 18/256; mid-p: 2 * (P(X <= 1) - P(X = 1)/2) = 10/256.
    result = mcnemar(PairedCounts(1, 1, 7, 12))
    assert result.pvalue == pytest.approx(18 / 256, rel=1e-12)
    assert result.midp == pytest.approx(10 / 256, rel=1e-12)
    assert result.discordant == 8


def test_alfworld_pilot_is_not_significant() -> None:
    result = mcnemar(PairedCounts(118, 16, 9, 7))
    expected = 2 * _tail(9, 25)
    assert result.pvalue == pytest.approx(float(expected), rel=1e-12)
    assert round(result.pvalue, 3) == 0.230
    assert result.midp == pytest.approx(float(2 * (_tail(9, 25) - _point(9, 25) / 2)), rel=1e-12)


def test_one_sided_alternatives_read_in_terms_of_the_treatment() -> None:
    counts = PairedCounts(118, 16, 9, 7)
    helps = mcnemar(counts, "greater")
    harms = mcnemar(counts, "less")
    assert helps.pvalue == pytest.approx(float(1 - _tail(15, 25)), rel=1e-12)  # P(X >= 16)
    assert helps.midp == pytest.approx(float(1 - _tail(16, 25) + _point(16, 25) / 2), rel=1e-12)
    assert harms.pvalue == pytest.approx(float(_tail(16, 25)), rel=1e-12)
    assert helps.midp + harms.midp == pytest.approx(1.0)


def test_no_discordant_pairs_is_a_test_without_data() -> None:
    two = mcnemar(PairedCounts(5, 0, 0, 5))
    assert (two.pvalue, two.midp) == (1.0, 1.0)
    one = mcnemar(PairedCounts(5, 0, 0, 5), "greater")
    assert (one.pvalue, one.midp) == (1.0, 0.5)


def test_unknown_alternative_is_refused() -> None:
    with pytest.raises(ValueError, match="alternative"):
        mcnemar(PairedCounts(1, 1, 1, 1), "bigger")  # type: ignore[arg-type]


cells = st.integers(min_value=0, max_value=60)


@given(cells, cells, cells, cells)
def test_pvalues_are_probabilities_and_mid_p_is_never_larger(a: int, b: int, c: int, d: int) -> None:
    counts = PairedCounts(a, b, c, d)
    for alternative in ("two-sided", "greater", "less"):
        result = mcnemar(counts, alternative)
        assert 0.0 <= result.midp <= result.pvalue <= 1.0
    swapped = mcnemar(counts.swapped())
    assert swapped.pvalue == pytest.approx(mcnemar(counts).pvalue)
    assert mcnemar(counts.swapped(), "greater").pvalue == pytest.approx(mcnemar(counts, "less").pvalue)
