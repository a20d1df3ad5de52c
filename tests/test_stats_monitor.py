"""The sequential monitor: hand-computed steps, persistence, batch = scalar, and the error-control simulations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray

from critic_guard.stats import MonitorState, pair_to_x, run_monitor

ONS = 2 / (2 - math.log(3))


def _pairs(rng: np.random.Generator, runs: int, steps: int, net: float, discordant: float) -> NDArray[np.float64]:
    """Simulated X values: recovery (0) w.p. (discordant + net)/2, disruption (1) w.p. (discordant - net)/2."""
    u = rng.random((runs, steps))
    p_recovery, p_disruption = (discordant + net) / 2, (discordant - net) / 2
    return np.where(u < p_recovery, 0.0, np.where(u < p_recovery + p_disruption, 1.0, 0.5))


def test_pair_encoding() -> None:
    assert pair_to_x(False, True) == 0.0  # recovery
    assert pair_to_x(True, False) == 1.0  # disruption
    assert pair_to_x(True, True) == pair_to_x(False, False) == 0.5


def test_first_steps_by_hand() -> None:
    s = MonitorState.start().update_pair(True, False)  # a disruption, bet 0: wealth stays 1
    assert s.harm_log_wealth == 0.0 and s.t == 1
    # ONS: gradient z = 0.5, A = 1 + 0.25, next bet = ONS * 0.5 / 1.25; the benefit side is clipped at 0.
    assert s.harm_bet == pytest.approx(ONS * 0.4)
    assert s.benefit_bet == 0.0
    s2 = s.update(1.0)
    assert s2.harm_wealth == pytest.approx(1 + ONS * 0.4 * 0.5)
    assert s2.benefit_wealth == 1.0


def test_concordant_pairs_do_not_move_the_wealth_or_the_bets() -> None:
    s = MonitorState.start()
    for x in (1.0, 1.0, 0.0, 1.0):
        s = s.update(x)
    after = s.update(0.5).update(0.5)
    for name in ("harm_log_wealth", "harm_bet", "harm_grad2", "benefit_log_wealth", "benefit_bet"):
        assert getattr(after, name) == getattr(s, name), name
    assert after.t == s.t + 2  # they still count towards the confidence sequence


def test_update_is_pure() -> None:
    s = MonitorState.start(alpha=0.1)
    s2 = s.update(1.0)
    assert s == MonitorState.start(alpha=0.1) and s2 is not s and s2.alpha == 0.1


def test_state_round_trips_through_json() -> None:
    s = MonitorState.start()
    for x in _pairs(np.random.default_rng(5), 1, 300, -0.15, 0.4)[0]:
        s = s.update(float(x))
    assert s.harm_proven
    restored = MonitorState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert restored == s
    assert restored.update(1.0) == s.update(1.0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"schema": 99}, "schema"),
        ({"extra": 1}, "keys differ"),
        ({"t": 1.5}, "t must be an integer"),
        ({"t": -1}, "non-negative"),
        ({"harm_log_wealth": "big"}, "finite number"),
        ({"sum_x": math.inf}, "finite number"),
        ({"alpha": 2.0}, "alpha"),
    ],
)
def test_corrupt_state_is_refused(change: dict[str, object], match: str) -> None:
    data = MonitorState.start().update(1.0).to_dict() | change
    with pytest.raises(ValueError, match=match):
        MonitorState.from_dict(data)


def test_bad_observations_are_refused() -> None:
    with pytest.raises(ValueError, match="x must be"):
        MonitorState.start().update(1.5)
    with pytest.raises(ValueError, match="x must be"):
        MonitorState.start().update(True)
    with pytest.raises(ValueError, match="two-dimensional"):
        run_monitor(np.zeros(5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        run_monitor(np.full((2, 2), -1.0))
    with pytest.raises(ValueError, match="alpha"):
        MonitorState.start(alpha=0.0)


def test_harm_proof_is_sticky() -> None:
    s = MonitorState.start()
    while not s.harm_proven:
        s = s.update(1.0)
    proven_at = s.harm_proven_at
    assert proven_at is not None and s.harm_wealth >= 20
    for _ in range(200):
        s = s.update(0.0)
    assert s.harm_wealth < 20 and s.harm_proven and s.harm_proven_at == proven_at


def test_batch_matches_scalar_updates() -> None:
    xs = _pairs(np.random.default_rng(2), 4, 120, -0.05, 0.5)
    xs[0, :10] = [0.0, 0.3, 1.0, 0.5, 0.9, 0.1, 1.0, 1.0, 0.5, 0.0]  # any value in [0, 1] is allowed
    paths = run_monitor(xs, alpha=0.1)
    for run in range(xs.shape[0]):
        s = MonitorState.start(alpha=0.1)
        for step, x in enumerate(xs[run]):
            s = s.update(float(x))
            interval = s.net_interval()
            assert paths.harm_log_wealth[run, step] == pytest.approx(s.harm_log_wealth, abs=1e-12)
            assert paths.benefit_log_wealth[run, step] == pytest.approx(s.benefit_log_wealth, abs=1e-12)
            assert paths.net_low[run, step] == pytest.approx(interval.low, abs=1e-12)
            assert paths.net_high[run, step] == pytest.approx(interval.high, abs=1e-12)
        assert paths.harm_times()[run] == (s.harm_proven_at or 0)
        assert paths.benefit_times()[run] == (s.benefit_proven_at or 0)


def test_confidence_sequence_matches_the_paper_formulas_written_with_cumsums() -> None:
    # Waudby-Smith & Ramdas (2023), Theorem 2, predictable plug-in empirical Bernstein, written independently.
    alpha = 0.05
    x = _pairs(np.random.default_rng(9), 1, 400, 0.08, 0.35)[0]
    t = np.arange(1, x.size + 1)
    mean = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mean) ** 2)) / (t + 1)
    mean_prev = np.concatenate([[0.5], mean[:-1]])
    var_prev = np.concatenate([[0.25], var[:-1]])
    lam = np.minimum(np.sqrt(2 * np.log(2 / alpha) / (var_prev * t * np.log(1 + t))), 0.5)
    psi = (-np.log(1 - lam) - lam) / 4
    centre = np.cumsum(lam * x) / np.cumsum(lam)
    radius = (np.log(2 / alpha) + np.cumsum(4 * (x - mean_prev) ** 2 * psi)) / np.cumsum(lam)
    expected_low = 1 - 2 * np.clip(centre + radius, 0, 1)
    expected_high = 1 - 2 * np.clip(centre - radius, 0, 1)
    paths = run_monitor(x[None, :], alpha)
    np.testing.assert_allclose(paths.net_low[0], expected_low, atol=1e-12)
    np.testing.assert_allclose(paths.net_high[0], expected_high, atol=1e-12)


def test_fresh_state_interval_is_vacuous() -> None:
    interval = MonitorState.start().net_interval()
    assert (interval.low, interval.high, interval.level) == (-1.0, 1.0, 0.95)


def test_false_alarm_rate_under_no_effect_stays_below_alpha() -> None:
    # 2000 seeded sequences of 500 pairs, net = 0 with 30% discordant flips. Ville's inequality bounds the chance
    # of *ever* crossing 1/alpha by alpha; the simulated rate must respect it with room to spare.
    alpha = 0.05
    paths = run_monitor(_pairs(np.random.default_rng(2026), 2000, 500, 0.0, 0.3), alpha)
    harm_alarms = float(np.mean(paths.harm_times() > 0))
    benefit_alarms = float(np.mean(paths.benefit_times() > 0))
    assert harm_alarms <= 0.8 * alpha
    assert benefit_alarms <= 0.8 * alpha


def test_clear_harm_is_detected_within_a_few_hundred_pairs() -> None:
    paths = run_monitor(_pairs(np.random.default_rng(7), 2000, 500, -0.1, 0.3), 0.05)
    times = paths.harm_times()
    detected = times > 0
    assert detected.mean() >= 0.85
    assert np.median(times[detected]) <= 250
    assert np.mean(paths.benefit_times() > 0) == 0.0
    # The confidence sequence covers the true net at every one of the 500 looks in at least 95% of runs.
    covered = ((paths.net_low <= -0.1) & (paths.net_high >= -0.1)).all(axis=1)
    assert covered.mean() >= 0.95


def test_wealth_saturates_to_infinity_instead_of_overflowing() -> None:
    state = MonitorState.start()
    for _ in range(3000):  # every pair a disruption: log-wealth grows past log(float max) ~ 709.8
        state = state.update(1.0)
    assert state.harm_log_wealth > 709.8
    assert state.harm_wealth == math.inf
    assert state.harm_proven_at is not None and state.harm_proven_at < 20
    assert state.benefit_wealth == 1.0  # the benefit bettor never stakes on a stream of disruptions
