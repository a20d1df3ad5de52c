"""McNemar's test on the discordant pairs, exact and mid-p.

(The module is not called ``mcnemar``: the package loads its names lazily, and a submodule of the same name as the
function :func:`mcnemar` would replace the function on the package once imported.)

Concordant pairs say nothing about which arm is better, so the test conditions on the ``m = n01 + n10`` discordant
pairs: with no effect, each is a recovery with probability 1/2, and the number of recoveries is Binomial(m, 1/2).
The exact p-value comes from :func:`scipy.stats.binomtest`; the mid-p variant counts the observed outcome with
weight 1/2, which removes most of the exact test's conservatism (Fagerland, Lydersen & Laake 2013 recommend it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scipy import stats

from critic_guard.stats.counts import PairedCounts

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES: tuple[Alternative, ...] = ("two-sided", "greater", "less")


@dataclass(frozen=True, slots=True)
class McNemarResult:
    """Result of :func:`mcnemar`.

    ``alternative`` reads in terms of the treatment: ``"greater"`` is "the intervention helps" (more recoveries than
    disruptions), ``"less"`` is "it harms". With no discordant pairs both p-values are those of a test with no
    data: the exact one is 1, the mid-p one 1 (two-sided) or 1/2 (one-sided).
    """

    recoveries: int
    disruptions: int
    alternative: Alternative
    pvalue: float
    midp: float

    @property
    def discordant(self) -> int:
        return self.recoveries + self.disruptions


def _midp(k: int, m: int, alternative: Alternative) -> float:
    """Mid-p value of ``k`` recoveries among ``m`` discordant pairs under Binomial(m, 1/2)."""
    half_point = 0.5 * float(stats.binom.pmf(k, m, 0.5))
    upper = float(stats.binom.sf(k, m, 0.5)) + half_point  # P(X > k) + P(X = k)/2
    lower = float(stats.binom.cdf(k, m, 0.5)) - half_point  # P(X < k) + P(X = k)/2
    if alternative == "greater":
        return upper
    if alternative == "less":
        return lower
    # The null distribution is symmetric, so the two-sided mid-p is twice the smaller tail (never above 1,
    # since the two one-sided mid-p values sum to 1).
    return 2.0 * min(upper, lower)


def mcnemar(counts: PairedCounts, alternative: Alternative = "two-sided") -> McNemarResult:
    """Exact and mid-p McNemar test of "no effect" (as many recoveries as disruptions expected)."""
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(_ALTERNATIVES)}, got {alternative!r}")
    k, m = counts.n01, counts.discordant
    exact = 1.0 if m == 0 else float(stats.binomtest(k, m, 0.5, alternative=alternative).pvalue)
    return McNemarResult(
        recoveries=counts.n01,
        disruptions=counts.n10,
        alternative=alternative,
        pvalue=exact,
        midp=_midp(k, m, alternative),
    )
