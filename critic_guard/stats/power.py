"""How many tasks a pilot needs: Connor's (1987) sample size for McNemar's test.

With ``effect`` = net = P(recovery pair) - P(disruption pair) and ``discordant`` = P(recovery pair) + P(disruption
pair), the two-sided level-``alpha`` McNemar test reaches power ``power`` with

    n = (z_{alpha/2} * sqrt(discordant) + z_power * sqrt(discordant - effect^2))^2 / effect^2

pairs (Connor, Biometrics 43:207-211). Solved the other way round for the effect it gives the minimum detectable
effect of a pilot of ``n`` pairs. The discordant rate matters as much as the effect: the same net effect is far
cheaper to detect when few tasks flip.
"""

from __future__ import annotations

import math

from scipy import stats

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
