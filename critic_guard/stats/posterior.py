"""Bayesian view of a pilot: a Dirichlet(1, 1, 1, 1) posterior over the four cell probabilities.

One draw of the cell probabilities gives one coherent set of (p, r, d, p_star, net), so the credible intervals
carry the joint uncertainty that separate intervals for r and d would miss (the joint bootstrap reviewers asked
the paper for). Two facts keep the Monte Carlo honest and testable:

* ``P(net > 0) = P(theta01 > theta10)`` and ``theta01/(theta01 + theta10) ~ Beta(n01 + 1, n10 + 1)`` (Dirichlet
  aggregation), so the probability is computed exactly, with no sampling error.
* ``p ~ Beta(n00 + n01 + 2, n10 + n11 + 2)``, ``r ~ Beta(n01 + 1, n00 + 1)`` and ``d ~ Beta(n10 + 1, n11 + 1)``
  exactly, which the tests use to check the sampled intervals.

``net > 0`` and ``p > p_star`` are the same event, so ``P(p > p_star) = P(net > 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from critic_guard.stats.counts import PairedCounts
from critic_guard.stats.intervals import Interval, check_level

PRIOR = 1.0  # Dirichlet(1, 1, 1, 1): uniform over the simplex of cell probabilities
DEFAULT_DRAWS = 20_000


@dataclass(frozen=True, slots=True)
class PosteriorSummary:
    """Exact ``P(net > 0)`` and equal-tailed credible intervals from ``draws`` seeded posterior draws."""

    prob_net_positive: float
    net: Interval
    p: Interval
    r: Interval
    d: Interval
    p_star: Interval
    p_minus_p_star: Interval
    draws: int
    seed: int

    def intervals(self) -> dict[str, Interval]:
        """The credible intervals by quantity name."""
        return {
            "net": self.net,
            "p": self.p,
            "r": self.r,
            "d": self.d,
            "p_star": self.p_star,
            "p_minus_p_star": self.p_minus_p_star,
        }


def prob_net_positive(counts: PairedCounts) -> float:
    """Exact posterior probability that the intervention raises the success rate (net > 0)."""
    return float(stats.beta.sf(0.5, counts.n01 + PRIOR, counts.n10 + PRIOR))


def _credible(samples: NDArray[np.float64], level: float) -> Interval:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(float(low), float(high), level, "Dirichlet(1,1,1,1) posterior")


def dirichlet_posterior(
    counts: PairedCounts, level: float = 0.95, draws: int = DEFAULT_DRAWS, seed: int = 0
) -> PosteriorSummary:
    """Summarise the posterior of the cell probabilities given ``counts`` (reproducible for a given ``seed``)."""
    level = check_level(level)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 100:
        raise ValueError(f"draws must be an integer >= 100, got {draws!r}")
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.asarray(counts.as_tuple(), dtype=float) + PRIOR, size=draws)
    t00, t01, t10, t11 = theta.T
    p = t00 + t01
    r = t01 / p
    d = t10 / (t10 + t11)
    p_star = d / (r + d)
    return PosteriorSummary(
        prob_net_positive=prob_net_positive(counts),
        net=_credible(t01 - t10, level),
        p=_credible(p, level),
        r=_credible(r, level),
        d=_credible(d, level),
        p_star=_credible(p_star, level),
        p_minus_p_star=_credible(p - p_star, level),
        draws=draws,
        seed=seed,
    )
