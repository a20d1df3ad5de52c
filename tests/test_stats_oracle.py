"""The oracle SPRT: Wald's formulas by hand, and the exact simulation against them."""

from __future__ import annotations

import math

import pytest

from critic_guard.stats import OracleSPRT, oracle_expected_tasks


def test_from_rates_derives_q_and_the_discordant_rate() -> None:
    oracle = OracleSPRT.from_rates(0.6, 0.5, 0.25)
    assert oracle.discordant_rate == pytest.approx(0.6 * 0.5 + 0.4 * 0.25)  # 0.4
    assert oracle.q == pytest.approx(0.3 / 0.4)


def test_wald_expected_sample_size_by_hand() -> None:
    oracle = OracleSPRT(q=0.75, discordant_rate=0.4, alpha=0.05, beta=0.2)
    a, b = math.log(0.8 / 0.05), math.log(0.2 / 0.95)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert (oracle.upper, oracle.lower) == (pytest.approx(a), pytest.approx(b))
    assert oracle.expected_discordant() == pytest.approx((0.8 * a + 0.2 * b) / kl)
    assert oracle.expected_tasks() == pytest.approx((0.8 * a + 0.2 * b) / kl / 0.4)
    assert oracle_expected_tasks(0.6, 0.5, 0.25) == pytest.approx(oracle.expected_tasks())


@pytest.mark.parametrize(("p", "r", "d"), [(0.893, 16 / 134, 0.5625), (0.5, 0.1, 0.3), (0.7, 0.4, 0.2)])
def test_simulation_agrees_with_wald_and_meets_the_error_rates(p: float, r: float, d: float) -> None:
    oracle = OracleSPRT.from_rates(p, r, d, alpha=0.05, beta=0.2)
    sim = oracle.simulate(runs=3000, seed=1)
    assert sim.decided.all()
    # Wald's approximation ignores the overshoot of the last step, so the simulated mean is a little larger.
    assert 0.95 <= sim.mean_tasks / oracle.expected_tasks() <= 1.3
    # Wald's thresholds keep the true error rates near the nominal ones (beta + a small overshoot effect).
    assert sim.power >= 0.78


def test_type_one_error_under_no_effect() -> None:
    # Data with q = 1/2: Wald's thresholds bound the chance of accepting H1 by alpha / (1 - beta).
    oracle = OracleSPRT(q=0.7, discordant_rate=0.3, alpha=0.05, beta=0.2)
    sim = oracle.simulate(runs=4000, seed=3, truth=0.5)
    assert sim.decided.all()
    assert sim.power <= 0.05 / 0.8  # here "power" is the false acceptance rate of H1
    with pytest.raises(ValueError, match="truth"):
        oracle.simulate(runs=10, truth=1.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"q": 0.5, "discordant_rate": 0.3}, "no effect"),
        ({"q": 0.6, "discordant_rate": 0.0}, "discordant_rate is 0"),
        ({"q": 1.0, "discordant_rate": 0.3}, "q must be"),
        ({"q": 0.6, "discordant_rate": 0.3, "alpha": 0.6}, "alpha"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OracleSPRT(**kwargs)


def test_no_discordant_world_is_refused() -> None:
    with pytest.raises(ValueError, match="ever discordant"):
        OracleSPRT.from_rates(0.5, 0.0, 0.0)
