"""The sequential monitor: hand-computed steps, persistence, batch = scalar, the confidence sequence as the inversion
of the same e-processes (it leaves 0 exactly at a proof), and the error-control simulations."""

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
    assert after.t == s.t + 2  # they still count, and move the band for every net but 0


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
        ({"band_low": math.inf}, "finite number"),
        ({"harm_grid": [0.0]}, "list of 99"),
        ({"split": 1}, "split must be a bool"),
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
    assert proven_at is not None and s.harm_wealth >= 40  # 1/(alpha/2): alpha bounds both sides together
    high = s.net_interval().high
    while s.harm_wealth >= 40:  # recoveries now: the wealth falls below the threshold again
        s = s.update(0.0)
    assert s.harm_proven and s.harm_proven_at == proven_at and not s.benefit_proven
    assert s.net_interval().high <= high < 0  # the band never widens again either


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


def _exact_rejections(
    xs: NDArray[np.float64], nets: NDArray[np.float64], alpha: float
) -> tuple[NDArray[np.bool_], ...]:
    """Written independently: replay the monitor's own bets and test every ``net`` in ``nets`` with them, from the
    products' definition (cumulative sums of logs), returning which nets each side has rejected by each time."""
    bets = []
    state = MonitorState.start(alpha)
    for x in xs:
        bets.append((state.harm_bet, state.benefit_bet))
        state = state.update(float(x))
    harm_bet, benefit_bet = np.array(bets).T
    m = (1 - nets[None, :]) / 2
    harm = np.cumsum(np.log(1 + harm_bet[:, None] * (xs[:, None] - m)), axis=0)
    benefit = np.cumsum(np.log(1 + benefit_bet[:, None] * (m - xs[:, None])), axis=0)
    level = math.log(2 / alpha)
    return np.maximum.accumulate(harm >= level, axis=0), np.maximum.accumulate(benefit >= level, axis=0)


def test_the_band_is_the_set_of_nets_the_e_processes_have_not_rejected() -> None:
    alpha = 0.05
    xs = _pairs(np.random.default_rng(9), 1, 400, 0.15, 0.35)[0]
    nets = np.linspace(-0.97, 0.97, 1941)  # a fine grid, independent of the monitor's own
    harm_rejected, benefit_rejected = _exact_rejections(xs, nets, alpha)
    paths = run_monitor(xs[None, :], alpha)
    assert paths.net_low is not None and paths.net_high is not None
    for t in range(xs.size):
        kept = nets[~harm_rejected[t] & ~benefit_rejected[t]]
        low, high = paths.net_low[0, t], paths.net_high[0, t]
        # Every net the e-processes have not rejected is inside the band (the band never claims too much) ...
        assert kept.min() >= low - 1e-12 and kept.max() <= high + 1e-12
        # ... and, where it ends inside the monitor's grid (|net| < 0.98), it is no wider than the grid's chord
        # interpolation allows.
        assert low <= -0.98 or kept.min() - low < 0.02
        assert high >= 0.98 or high - kept.max() < 0.02
    # This stream proves benefit; the independent replay rejects net = 0 at that very pair, not before.
    proven, zero = int(paths.benefit_times()[0]), int(np.argmin(abs(nets)))
    assert proven > 1 and abs(nets[zero]) < 1e-9
    assert benefit_rejected[proven - 1, zero] and not benefit_rejected[proven - 2, zero]
    assert paths.net_low[0, proven - 1] > 0 >= paths.net_low[0, proven - 2]


def test_band_leaves_zero_exactly_at_the_pair_where_harm_or_benefit_is_proven() -> None:
    rng = np.random.default_rng(17)
    for net in (0.1, -0.1, 0.04):
        paths = run_monitor(_pairs(rng, 300, 400, net, 0.3), 0.05)
        assert paths.net_low is not None and paths.net_high is not None
        benefit, harm = paths.benefit_times(), paths.harm_times()
        for run in range(300):
            excludes = (paths.net_low[run] > 0) | (paths.net_high[run] < 0)
            proven = [t for t in (benefit[run], harm[run]) if t > 0]
            first = int(np.argmax(excludes)) + 1 if excludes.any() else 0
            assert first == (min(proven) if proven else 0), (net, run)
            if benefit[run]:
                assert paths.net_low[run, benefit[run] - 1] > 0
            if harm[run]:
                assert paths.net_high[run, harm[run] - 1] < 0
        assert (benefit > 0).mean() > 0.5 if net > 0.05 else True
        assert (harm > 0).mean() > 0.5 if net < -0.05 else True


def test_fresh_state_interval_is_vacuous() -> None:
    interval = MonitorState.start().net_interval()
    assert (interval.low, interval.high, interval.level) == (-1.0, 1.0, 0.95)


def test_false_alarm_rate_under_no_effect_stays_below_alpha() -> None:
    # 2000 seeded sequences of 500 pairs, net = 0 with 30% discordant flips. Ville's inequality bounds the chance
    # of *ever* crossing 2/alpha on a side by alpha/2; the simulated rates must respect it with room to spare.
    alpha = 0.05
    paths = run_monitor(_pairs(np.random.default_rng(2026), 2000, 500, 0.0, 0.3), alpha, band=False)
    harm_alarms = float(np.mean(paths.harm_times() > 0))
    benefit_alarms = float(np.mean(paths.benefit_times() > 0))
    either = float(np.mean((paths.harm_times() > 0) | (paths.benefit_times() > 0)))
    assert harm_alarms <= 0.8 * alpha / 2 and benefit_alarms <= 0.8 * alpha / 2
    assert either <= 0.8 * alpha
    per_side = run_monitor(_pairs(np.random.default_rng(2026), 2000, 500, 0.0, 0.3), alpha, split=False, band=False)
    assert float(np.mean(per_side.harm_times() > 0)) <= 0.8 * alpha  # the per-side setting: alpha on each side


def test_clear_harm_is_detected_within_a_few_hundred_pairs() -> None:
    paths = run_monitor(_pairs(np.random.default_rng(7), 1000, 500, -0.1, 0.3), 0.05)
    times = paths.harm_times()
    detected = times > 0
    assert detected.mean() >= 0.85
    assert np.median(np.where(detected, times, 10**9)) <= 250  # median over all runs (undetected count as never)
    assert np.mean(paths.benefit_times() > 0) == 0.0
    # The confidence sequence covers the true net at every one of the 500 looks in at least 95% of runs.
    assert paths.net_low is not None and paths.net_high is not None
    covered = ((paths.net_low <= -0.1) & (paths.net_high >= -0.1)).all(axis=1)
    assert covered.mean() >= 0.95


def test_the_grid_e_process_at_zero_is_the_harm_e_process() -> None:
    s = MonitorState.start()
    for x in _pairs(np.random.default_rng(1), 1, 200, -0.1, 0.4)[0]:
        s = s.update(float(x))
        assert s.harm_grid[49] == s.harm_log_wealth and s.benefit_grid[49] == s.benefit_log_wealth


def test_a_schema_1_state_loads_with_its_meaning_kept() -> None:
    old = {
        "schema": 1, "alpha": 0.05, "t": 61, "harm_bet": 0.4, "harm_grad2": 9.0, "harm_log_wealth": 3.2,
        "harm_proven_at": 61, "benefit_bet": 0.0, "benefit_grad2": 4.0, "benefit_log_wealth": -1.0,
        "benefit_proven_at": None, "sum_x": 40.0, "sum_sq_dev": 5.0, "sum_lam": 9.0, "sum_lam_x": 6.0,
        "sum_penalty": 0.1,
    }  # fmt: skip
    state = MonitorState.from_dict(old)
    assert (state.split, state.threshold, state.harm_proven_at, state.harm_log_wealth) == (False, 20.0, 61, 3.2)
    assert state.net_interval().high == 0.0 and state.net_interval().low == -1.0  # the proof keeps 0 out
    assert MonitorState.from_dict(state.to_dict()) == state


def test_wealth_saturates_to_infinity_instead_of_overflowing() -> None:
    state = MonitorState.start()
    for _ in range(3000):  # every pair a disruption: log-wealth grows past log(float max) ~ 709.8
        state = state.update(1.0)
    assert state.harm_log_wealth > 709.8
    assert state.harm_wealth == math.inf
    assert state.harm_proven_at is not None and state.harm_proven_at < 20
    assert state.benefit_wealth == 1.0  # the benefit bettor never stakes on a stream of disruptions
