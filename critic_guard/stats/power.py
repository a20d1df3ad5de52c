"""How many tasks a pilot needs: the exact power of the report's verdict, and Connor's (1987) approximation.

The report's verdict needs the Tango interval *and* the exact McNemar test to reject (docs/statistics.md), so the
tasks it needs are planned for that rule: :func:`verdict_power` enumerates every outcome (exact), and
:func:`verdict_sample_size` / :func:`verdict_detectable_effect` invert it, naming their method. Connor's formula
below is the normal approximation for the asymptotic test alone; it overstates power for the exact rule at small n
and is kept for reference and for pilots too large to enumerate.

With ``effect`` = net = P(recovery pair) - P(disruption pair) and ``discordant`` = P(recovery pair) + P(disruption
pair), the two-sided level-``alpha`` McNemar test reaches power ``power`` with

    n = (z_{alpha/2} * sqrt(discordant) + z_power * sqrt(discordant - effect^2))^2 / effect^2

pairs (Connor, Biometrics 43:207-211). Solved the other way round for the effect it gives the minimum detectable
effect of a pilot of ``n`` pairs. The discordant rate matters as much as the effect: the same net effect is far
cheaper to detect when few tasks flip.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special, stats

from critic_guard.stats.counts import Estimate


def _check_probability(name: str, value: float, *, allow_one: bool = False) -> float:
    ok = 0.0 < value <= 1.0 if allow_one else 0.0 < value < 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return float(value)


def _check_effect(effect: float, discordant: float) -> tuple[float, float]:
    discordant = _check_probability("discordant", discordant, allow_one=True)
    if isinstance(effect, bool) or not isinstance(effect, int | float) or not math.isfinite(effect):
        raise ValueError(f"effect must be a number, got {effect!r}")
    if effect == 0 or abs(effect) >= discordant:
        raise ValueError(
            f"effect must be non-zero and smaller in size than the discordant rate {discordant}, got {effect}"
        )
    return abs(float(effect)), discordant


def _z(alpha: float, power: float) -> tuple[float, float]:
    alpha = _check_probability("alpha", alpha)
    power = _check_probability("power", power)
    return float(stats.norm.isf(alpha / 2.0)), float(stats.norm.ppf(power))


def mcnemar_power(n: int, effect: float, discordant: float, alpha: float = 0.05) -> float:
    """Approximate power of the two-sided McNemar test with ``n`` pairs (Connor 1987)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    effect, discordant = _check_effect(effect, discordant)
    z_alpha = float(stats.norm.isf(_check_probability("alpha", alpha) / 2.0))
    spread = math.sqrt(discordant - effect**2)
    return float(stats.norm.cdf((math.sqrt(n) * effect - z_alpha * math.sqrt(discordant)) / spread))


def mcnemar_sample_size(effect: float, discordant: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Pairs needed to detect a net ``effect`` with a ``discordant`` rate at two-sided ``alpha`` and ``power``."""
    effect, discordant = _check_effect(effect, discordant)
    z_alpha, z_power = _z(alpha, power)
    root_n = (z_alpha * math.sqrt(discordant) + z_power * math.sqrt(discordant - effect**2)) / effect
    return math.ceil(root_n**2 - 1e-9)  # the tolerance keeps an exact integer from rounding up by float noise


def minimum_detectable_effect(n: int, discordant: float, alpha: float = 0.05, power: float = 0.8) -> Estimate:
    """Smallest |net| that ``n`` pairs detect with ``power`` when a share ``discordant`` of tasks flip.

    Closed form of Connor's equation solved for the effect (a quadratic in it). Undefined when even the largest
    possible effect (every discordant pair going one way) would not reach the power.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    discordant = _check_probability("discordant", discordant, allow_one=True)
    z_alpha, z_power = _z(alpha, power)
    if power < 0.5:
        raise ValueError(f"power must be at least 0.5 for a minimum detectable effect, got {power}")
    under_root = n + z_power**2 - z_alpha**2
    if under_root < 0:
        return Estimate.undefined(f"{n} pairs are too few for any effect to reach power {power:g}")
    effect = math.sqrt(discordant) * (math.sqrt(n) * z_alpha + z_power * math.sqrt(under_root)) / (n + z_power**2)
    if effect >= discordant:
        return Estimate.undefined(
            f"with discordant rate {discordant:.3g}, {n} pairs cannot reach power {power:g} for any effect"
        )
    return Estimate.defined(effect)


# ---- the verdict's own power, by enumeration -------------------------------------------------------------------

EXACT_METHOD = "exact power of the verdict's rule, enumerated"
CONNOR_METHOD = "Connor 1987 normal approximation (too many pairs to enumerate)"
EXACT_LIMIT = 100_000
"""Pilots up to this many pairs are planned by enumeration (milliseconds); beyond it Connor's formula, whose normal
approximation is then accurate, is used and named."""


def _critical_recoveries(m: NDArray[np.int64], alpha: float) -> NDArray[np.int64]:
    """Per number ``m`` of discordant pairs, the largest recovery count ``k < m/2`` at which the verdict says
    "harms" (-1 if none): the exact two-sided McNemar p ``2 P(X <= k) <= alpha`` *and* the Tango interval
    excludes 0, ``(m - 2k)/sqrt(m) > z``. By symmetry "helps" is ``k >= m - c``."""
    half = alpha / 2.0
    k0 = stats.binom.ppf(half, m, 0.5).astype(np.int64)  # smallest k with P(X <= k) >= alpha/2
    exact = np.where(stats.binom.cdf(k0, m, 0.5) <= half, k0, k0 - 1)
    z = float(stats.norm.isf(half))
    asymptotic = np.ceil((m - z * np.sqrt(m)) / 2.0).astype(np.int64) - 1
    return np.where(m > 0, np.minimum(exact, asymptotic), -1)


_CRITICAL: dict[float, NDArray[np.int64]] = {}


def _critical_upto(top: int, alpha: float) -> NDArray[np.int64]:
    """:func:`_critical_recoveries` for m = 0..top, cached per alpha (it depends on nothing else)."""
    known = _CRITICAL.get(alpha)
    if known is None or known.size <= top:
        size = max(top + 1, 2 * (0 if known is None else known.size), 1024)
        known = _critical_recoveries(np.arange(size, dtype=np.int64), alpha)
        _CRITICAL[alpha] = known
    return known[: top + 1]


def verdict_power(n: int, effect: float, discordant: float, alpha: float = 0.05) -> float:
    """Exact power of the report's verdict (helps/harms, two-sided at ``alpha``) with ``n`` pairs.

    The number of discordant pairs is Binomial(n, discordant) and, given it, the recoveries are Binomial(m, q) with
    ``q = (discordant + effect) / (2 discordant)``; every (m, k) is enumerated (discordant counts more than 10
    standard deviations + 10 from the mean, whose probability is far below float resolution, are skipped), so
    nothing is approximated. Counts a verdict of either sign (at these
    effects a wrong-sign verdict has negligible probability).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    discordant = _check_probability("discordant", discordant, allow_one=True)
    alpha = _check_probability("alpha", alpha)
    if isinstance(effect, bool) or not isinstance(effect, int | float) or not abs(effect) <= discordant:
        raise ValueError(f"effect must be a number no larger in size than the discordant rate, got {effect!r}")
    q = (discordant + float(effect)) / (2.0 * discordant)
    mean, spread = n * discordant, 10.0 * math.sqrt(n * discordant * (1.0 - discordant)) + 10.0
    m = np.arange(max(0, math.floor(mean - spread)), min(n, math.ceil(mean + spread)) + 1, dtype=np.int64)
    c = _critical_upto(int(m[-1]), alpha)[m]
    decided = c >= 0
    low = np.where(decided, special.bdtr(np.maximum(c, 0), m, q), 0.0)  # P(K <= c): "harms"
    high = np.where(decided, special.bdtrc(np.maximum(m - c - 1, 0), m, q), 0.0)  # P(K >= m - c): "helps"
    log_pmf = (
        special.gammaln(n + 1)
        - special.gammaln(m + 1)
        - special.gammaln(n - m + 1)
        + special.xlogy(m, discordant)
        + special.xlog1py(n - m, -discordant)
    )
    return float(np.sum(np.exp(log_pmf) * (low + high)))


def verdict_sample_size(effect: float, discordant: float, alpha: float = 0.05, power: float = 0.8) -> tuple[int, str]:
    """Pairs the verdict needs to detect ``effect`` with ``power``, and the method (:data:`EXACT_METHOD` or
    :data:`CONNOR_METHOD`).

    Exact: the smallest ``n`` that reaches ``power`` in a bisection started from Connor's answer. The enumerated
    power rises with ``n`` up to a sawtooth of a fraction of a point (the exact test's discreteness, smoothed by the
    random number of discordant pairs), so the answer is the first crossing the bisection meets.
    """
    size = abs(float(effect))
    if isinstance(effect, bool) or not 0.0 < size <= _check_probability("discordant", discordant, allow_one=True):
        raise ValueError(
            f"effect must be non-zero and no larger in size than the discordant rate {discordant}, got {effect}"
        )
    _z(alpha, power)  # validates both
    start = mcnemar_sample_size(size, discordant, alpha, power) if size < discordant else 1
    if start > EXACT_LIMIT:
        return start, CONNOR_METHOD
    low, high = 0, max(start, 1)
    while verdict_power(high, size, discordant, alpha) < power:  # the exact rule needs a few percent more
        low, high = high, high + max(1, high // 8)
        if high > EXACT_LIMIT:
            return mcnemar_sample_size(size, discordant, alpha, power), CONNOR_METHOD
    while high - low > 1:  # invariant: power(high) >= target, power(low) < target (or low = 0)
        middle = (low + high) // 2
        if verdict_power(middle, size, discordant, alpha) >= power:
            high = middle
        else:
            low = middle
    return high, EXACT_METHOD


def verdict_detectable_effect(
    n: int, discordant: float, alpha: float = 0.05, power: float = 0.8
) -> tuple[Estimate, str]:
    """Smallest |net| the verdict detects with ``power`` in ``n`` pairs, and the method; undefined when even every
    discordant pair going one way would not reach ``power``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n > EXACT_LIMIT:
        return minimum_detectable_effect(n, discordant, alpha, power), CONNOR_METHOD
    discordant = _check_probability("discordant", discordant, allow_one=True)
    _z(alpha, power)
    if power < 0.5:
        raise ValueError(f"power must be at least 0.5 for a minimum detectable effect, got {power}")
    if verdict_power(n, discordant, discordant, alpha) < power:
        reason = f"with discordant rate {discordant:.3g}, {n} pairs cannot reach power {power:g} for any effect"
        return Estimate.undefined(reason), EXACT_METHOD
    # Power grows continuously with |effect| from <= alpha at 0 to >= target at the discordant rate: one root.
    root = optimize.brentq(lambda e: verdict_power(n, e, discordant, alpha) - power, 0.0, discordant, xtol=1e-7)
    return Estimate.defined(float(root)), EXACT_METHOD
