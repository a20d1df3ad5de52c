"""Sample sizes: Connor's approximation (consistency of its three forms, a simulation of the test it plans for) and
the exact power of the verdict's own rule, checked against brute force over every table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from critic_guard.stats import (
    CONNOR_METHOD,
    EXACT_METHOD,
    PairedCounts,
    PilotConclusion,
    mcnemar_power,
    mcnemar_sample_size,
    minimum_detectable_effect,
    verdict_detectable_effect,
    verdict_of,
    verdict_power,
    verdict_sample_size,
)
from critic_guard.stats.power import EXACT_LIMIT


def test_sample_size_by_hand_for_the_alfworld_effect() -> None:
    effect, discordant = 7 / 150, 25 / 150
    z_a, z_b = stats.norm.isf(0.025), stats.norm.ppf(0.8)
    by_hand = ((z_a * math.sqrt(discordant) + z_b * math.sqrt(discordant - effect**2)) / effect) ** 2
    assert mcnemar_sample_size(effect, discordant) == math.ceil(by_hand) == 599


def test_planned_size_achieves_the_power_in_simulation() -> None:
    # Simulate the two-sided asymptotic McNemar test at Connor's n: the rejection rate should be about 80%.
    effect, discordant = 0.05, 0.2
    n = mcnemar_sample_size(effect, discordant)
    rng = np.random.default_rng(11)
    p01, p10 = (discordant + effect) / 2, (discordant - effect) / 2
    cells = rng.multinomial(n, [p01, p10, 1 - discordant], size=4000)
    b, c = cells[:, 0], cells[:, 1]
    statistic = (b - c) ** 2 / np.maximum(b + c, 1)
    rejected = float(np.mean(statistic > stats.chi2.isf(0.05, 1)))
    assert rejected == pytest.approx(0.80, abs=0.025)


def test_power_and_detectable_effect_invert_each_other() -> None:
    for n, discordant in [(50, 0.3), (150, 25 / 150), (1000, 0.05)]:
        mde = minimum_detectable_effect(n, discordant).require()
        assert mcnemar_power(n, mde, discordant) == pytest.approx(0.8, abs=1e-9)
        assert mcnemar_sample_size(mde, discordant) in (n, n + 1)
        assert mcnemar_power(n, -mde, discordant) == pytest.approx(0.8, abs=1e-9)  # the sign does not matter


def test_alfworld_pilot_could_only_detect_about_nine_points() -> None:
    assert round(minimum_detectable_effect(150, 25 / 150).require(), 3) == 0.093


def test_power_grows_with_tasks() -> None:
    powers = [mcnemar_power(n, 0.05, 0.2) for n in (100, 300, 600, 1200)]
    assert powers == sorted(powers) and powers[-1] > 0.95


def test_undetectable_when_too_few_tasks() -> None:
    tiny = minimum_detectable_effect(10, 0.2)
    assert tiny.value is None and "cannot reach power 0.8" in (tiny.reason or "")
    assert minimum_detectable_effect(2, 0.9).reason == "2 pairs are too few for any effect to reach power 0.8"


@pytest.mark.parametrize(
    ("effect", "discordant", "match"),
    [(0.0, 0.2, "non-zero"), (0.3, 0.2, "smaller in size"), (0.1, 0.0, "discordant"), (math.nan, 0.2, "effect")],
)
def test_bad_effects_are_refused(effect: float, discordant: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mcnemar_sample_size(effect, discordant)


def test_bad_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        mcnemar_sample_size(0.05, 0.2, alpha=1.0)
    with pytest.raises(ValueError, match="power"):
        minimum_detectable_effect(100, 0.2, power=0.3)
    with pytest.raises(ValueError, match="n must be"):
        mcnemar_power(0, 0.05, 0.2)


# ---- the verdict's own power (exact enumeration) ---------------------------------------------------------------


def test_exact_power_equals_brute_force_over_every_table() -> None:
    # Independent: enumerate every multinomial table of n = 30 pairs, apply the report's real verdict to each, and
    # add up the probability of a decided verdict. No shared code with verdict_power but the verdict itself.
    n, effect, discordant = 30, 0.3, 0.5
    p01, p10 = (discordant + effect) / 2, (discordant - effect) / 2
    total = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            if verdict_of(PairedCounts(n - b - c, b, c, 0))[0] is not PilotConclusion.INCONCLUSIVE:
                total += stats.multinomial.pmf([b, c, n - b - c], n, [p01, p10, 1 - discordant])
    assert verdict_power(n, effect, discordant) == pytest.approx(total, abs=1e-12)


def test_exact_sample_size_is_the_first_n_reaching_the_power() -> None:
    for effect, discordant in [(7 / 150, 25 / 150), (0.05, 0.2), (0.1, 0.12), (-0.08, 0.3)]:
        n, method = verdict_sample_size(effect, discordant)
        assert method == EXACT_METHOD
        assert verdict_power(n, effect, discordant) >= 0.8 > verdict_power(n - 1, effect, discordant)
    assert verdict_sample_size(7 / 150, 25 / 150)[0] == 632  # Connor: 599


def test_connors_n_falls_short_for_the_verdict() -> None:
    # The measurement: at Connor's n the verdict's rule has only 0.77-0.78 power for a small effect.
    assert 0.77 <= verdict_power(mcnemar_sample_size(7 / 150, 25 / 150), 7 / 150, 25 / 150) < 0.79
    assert 0.77 <= verdict_power(mcnemar_sample_size(0.05, 0.2), 0.05, 0.2) < 0.79


def test_exact_detectable_effect_inverts_the_exact_power() -> None:
    mde, method = verdict_detectable_effect(150, 25 / 150)
    assert method == EXACT_METHOD and round(mde.require(), 3) == 0.096
    assert verdict_power(150, mde.require(), 25 / 150) == pytest.approx(0.8, abs=1e-3)
    tiny, _ = verdict_detectable_effect(5, 1.0)  # 5 pairs: even 5 recoveries give exact p = 0.0625
    assert tiny.value is None and "cannot reach power 0.8" in (tiny.reason or "")


def test_pilots_too_large_to_enumerate_fall_back_to_connor_and_say_so() -> None:
    n, method = verdict_sample_size(0.001, 0.2)
    assert (n, method) == (mcnemar_sample_size(0.001, 0.2), CONNOR_METHOD)
    mde, method = verdict_detectable_effect(EXACT_LIMIT + 1, 0.2)
    assert method == CONNOR_METHOD and mde == minimum_detectable_effect(EXACT_LIMIT + 1, 0.2)
