"""Calibration: recovery of known parameters, PAV against scipy, the threshold-shift identity, critic quality."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special, stats

from critic_guard.calibration import (
    CalibratedCritic,
    Calibrator,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    critic_quality,
    labeled_verdicts,
)
from critic_guard.critics import ConstantCritic
from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store import SQLiteStore
from critic_guard.types import StepContext


def synthetic(n: int, raw_logit_of_true: float, shift: float = 0.0, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """True failure logit z ~ N(0, 1.5^2); the critic reports sigmoid(raw_logit_of_true * z + shift)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    failed = rng.random(n) < special.expit(z)
    return special.expit(raw_logit_of_true * z + shift), failed


@pytest.mark.parametrize("true_t", [0.5, 2.0, 3.0])
def test_temperature_scaling_recovers_a_known_temperature(true_t: float) -> None:
    scores, failed = synthetic(30_000, true_t)  # raw logit = T * true logit: over-confident when T > 1
    fitted = TemperatureScaling.fit(scores, failed)
    assert fitted.temperature == pytest.approx(true_t, rel=0.05)
    assert fitted.name == f"temperature(T={fitted.temperature:.4g})"


def test_temperature_fit_is_the_nll_minimum() -> None:
    scores, failed = synthetic(2_000, 2.0, seed=1)
    t = TemperatureScaling.fit(scores, failed).temperature
    z = special.logit(scores)

    def nll(temp: float) -> float:
        q = special.expit(z / temp)
        return float(-np.sum(failed * np.log(q) + (~failed) * np.log1p(-q)))

    assert nll(t) < nll(t * 1.01) and nll(t) < nll(t / 1.01)


def test_platt_scaling_recovers_slope_and_intercept() -> None:
    # raw logit = (z - 0.8) / 0.5, so a = 0.5 and b = 0.8 map it back to the true logit z.
    scores, failed = synthetic(30_000, 1 / 0.5, shift=-0.8 / 0.5, seed=3)
    fitted = PlattScaling.fit(scores, failed)
    assert fitted.a == pytest.approx(0.5, rel=0.05)
    assert fitted.b == pytest.approx(0.8, abs=0.05)


def test_platt_refuses_a_backwards_critic() -> None:
    scores, failed = synthetic(2_000, -1.0, seed=4)
    with pytest.raises(ValueError, match="not positive"):
        PlattScaling.fit(scores, failed)


def test_isotonic_small_example_by_hand() -> None:
    iso = IsotonicCalibration.fit([0.1, 0.2, 0.3, 0.4], [False, True, False, True])
    assert iso == IsotonicCalibration((0.1, 0.2, 0.4), (0.0, 0.5, 1.0))
    assert iso.transform(0.05) == 0.0
    assert iso.transform(0.35) == 0.5
    assert list(iso.transform(np.array([0.1, 0.2, 0.3, 0.4, 0.9]))) == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert [iso.raw_threshold(t) for t in (0.0, 0.3, 0.5, 0.6, 1.0)] == [0.0, 0.2, 0.2, 0.4, 0.4]
    assert IsotonicCalibration((0.1, 0.5), (0.2, 0.4)).raw_threshold(0.6) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isotonic_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(400), 2)  # many ties
    failed = rng.random(400) < scores**2
    iso = IsotonicCalibration.fit(scores, failed)
    xs, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=failed) / counts
    expected = optimize.isotonic_regression(means, weights=counts).x
    np.testing.assert_allclose(iso.transform(xs), expected, atol=1e-12)
    assert all(b > a for a, b in itertools.pairwise(iso.values))


def test_transform_scalar_and_array_shapes() -> None:
    cal = TemperatureScaling(2.0)
    assert isinstance(cal.transform(0.9), float)
    assert cal.transform(0.9) == pytest.approx(0.75)  # odds 9 -> sqrt(9) = 3
    assert cal.transform(np.full((2, 3), 0.9)).shape == (2, 3)
    with pytest.raises(ValueError, match="probabilities"):
        cal.transform(1.5)


def test_raw_threshold_closed_forms() -> None:
    # Temperature 2: calibrated p >= 0.6 (odds 1.5) iff raw odds >= 1.5^2 = 2.25, i.e. raw p >= 2.25/3.25.
    assert TemperatureScaling(2.0).raw_threshold(0.6) == pytest.approx(2.25 / 3.25)
    # Platt a=0.5, b=0.8: a*logit(p)+b >= logit(0.6) iff logit(p) >= (logit(0.6)-0.8)/0.5.
    assert PlattScaling(0.5, 0.8).raw_threshold(0.6) == pytest.approx(special.expit((math.log(1.5) - 0.8) / 0.5))
    assert TemperatureScaling(2.0).raw_threshold(0.0) == 0.0
    assert TemperatureScaling(2.0).raw_threshold(1.0) == math.inf
    with pytest.raises(ValueError, match="tau must be in"):
        TemperatureScaling(2.0).raw_threshold(1.2)


CALIBRATORS: list[Calibrator] = [
    TemperatureScaling(0.4),
    TemperatureScaling(2.5),
    PlattScaling(0.7, -0.3),
    PlattScaling(1.8, 1.1),
    IsotonicCalibration.fit(*synthetic(500, 2.0, seed=5)),
]


@settings(max_examples=200, deadline=None)
@given(
    cal=st.sampled_from(CALIBRATORS),
    tau=st.floats(0.0, 1.0),
    p=st.floats(0.0, 1.0),
)
def test_calibration_is_a_threshold_shift(cal: Calibrator, tau: float, p: float) -> None:
    """calibrated(p) >= tau exactly when p >= raw_threshold(tau) (up to rounding right at the threshold)."""
    r = cal.raw_threshold(tau)
    if math.isfinite(r) and abs(p - r) < 1e-9:
        return
    assert (cal.transform(p) >= tau) == (p >= r)


def test_calibration_keeps_auroc() -> None:
    scores, failed = synthetic(3_000, 2.5, seed=6)
    raw = critic_quality(scores, failed)
    for cal in (TemperatureScaling.fit(scores, failed), PlattScaling.fit(scores, failed)):
        assert critic_quality(cal.transform(scores), failed).auroc == pytest.approx(raw.auroc, abs=1e-12)
        assert critic_quality(cal.transform(scores), failed).ece < raw.ece


def test_calibrated_critic_and_the_equivalent_raw_guard() -> None:
    cal = TemperatureScaling(2.0)
    critic = CalibratedCritic(ConstantCritic(0.9, rationale="why"), cal)
    assert critic.name == "constant-0.9+temperature(T=2)"
    ctx = StepContext("r", 4, ())
    verdict = critic.judge(ctx)
    assert verdict.p_fail == pytest.approx(0.75)
    assert verdict.rationale == "why"
    tau = 0.6
    calibrated_guard = CriticGuard(critic, mode="on", store=None, policy=Policy(tau=tau))
    for raw in (0.6, 0.65, 0.69, 0.70, 0.8):
        raw_critic = ConstantCritic(raw)
        on_calibrated = CriticGuard(CalibratedCritic(raw_critic, cal), mode="on", store=None, policy=Policy(tau=tau))
        on_raw = CriticGuard(raw_critic, mode="on", store=None, policy=Policy(tau=cal.raw_threshold(tau)))
        assert on_calibrated.review(ctx).decision.flagged == on_raw.review(ctx).decision.flagged == (raw >= 0.6923)
    assert calibrated_guard.review(ctx).decision.flagged


def _auroc_by_pairs(scores: np.ndarray, failed: np.ndarray) -> float:
    pos, neg = scores[failed], scores[~failed]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


@pytest.mark.parametrize("seed", [0, 1])
def test_auroc_against_independent_computations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    failed = rng.random(300) < 0.4
    scores = np.clip(np.round(0.5 + 0.2 * failed + rng.normal(0, 0.2, 300), 1), 0, 1)  # coarse: many ties
    q = critic_quality(scores, failed)
    u = stats.mannwhitneyu(scores[failed], scores[~failed]).statistic
    assert q.auroc == pytest.approx(u / (failed.sum() * (~failed).sum()), abs=1e-12)
    assert q.auroc == pytest.approx(_auroc_by_pairs(scores, failed), abs=1e-12)


def test_auroc_extremes() -> None:
    failed = np.array([True, True, False, False])
    assert critic_quality([0.9, 0.8, 0.2, 0.1], failed).auroc == 1.0
    assert critic_quality([0.1, 0.2, 0.8, 0.9], failed).auroc == 0.0
    assert critic_quality([0.5, 0.5, 0.5, 0.5], failed).auroc == 0.5


def test_ece_and_reliability_table_by_hand() -> None:
    q = critic_quality([0.05, 0.15, 0.95, 0.95, 1.0], [False, False, True, False, True], bins=10)
    # bins: [0,.1): .05 vs 0; [.1,.2): .15 vs 0; [.9,1]: mean .9667 vs 2/3
    assert q.ece == pytest.approx((0.05 + 0.15 + 3 * abs(2.9 / 3 - 2 / 3)) / 5)
    assert q.brier == pytest.approx((0.05**2 + 0.15**2 + 0.05**2 + 0.95**2 + 0.0) / 5)
    assert (q.n, q.n_failed) == (5, 2)
    assert [b.count for b in q.reliability] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    last = q.reliability[-1]
    assert (last.low, last.high) == (0.9, 1.0)
    assert last.failure_rate == pytest.approx(2 / 3)
    assert q.reliability[4].mean_score is None
    text = str(q)
    assert q.auroc == pytest.approx(5.5 / 6)  # failed {.95, 1} vs ok {.05, .15, .95}: 5 wins and a tie of 6 pairs
    assert "AUROC=0.917" in text and "[0.80, 0.90)" in text and "[0.90, 1.00]" in text


@pytest.mark.parametrize(
    ("scores", "failed", "message"),
    [
        ([0.1, 0.2], [True, True], "at least one failed and one successful"),
        ([0.1, 0.2], [True], "equal length"),
        ([0.1, 1.2], [True, False], "probabilities"),
        ([0.1, math.nan], [True, False], "probabilities"),
        ([0.1, 0.2], [2, 0], "booleans"),
        ([], [], "no labeled verdicts"),
    ],
)
def test_bad_inputs(scores: list[float], failed: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        critic_quality(scores, failed)


def test_labeled_verdicts_from_the_store() -> None:
    with SQLiteStore(":memory:") as store:
        guard = CriticGuard(lambda ctx: 0.1 * ctx.step, store=store)
        other = CriticGuard(ConstantCritic(0.5), store=store)
        for success in (True, False):
            run_id = guard.start_run()
            for step in range(3):
                guard.review(StepContext(run_id, step, ()))
            guard.end_run(run_id, success=success)
        unlabeled = guard.start_run()
        guard.review(StepContext(unlabeled, 0, ()))
        other_run = other.start_run()
        other.review(StepContext(other_run, 0, ()))
        other.end_run(other_run, success=False)
        scores, failed = labeled_verdicts(store, guard.guard_key)
    np.testing.assert_allclose(scores, [0.0, 0.1, 0.2, 0.0, 0.1, 0.2])
    assert failed.tolist() == [False, False, False, True, True, True]


def test_a_calibrated_critic_runs_where_the_critic_it_wraps_runs() -> None:
    class OnCallersLoop(ConstantCritic):
        caller_loop = True

    cal = TemperatureScaling(2.0)
    plain, bound = CalibratedCritic(ConstantCritic(0.9), cal), CalibratedCritic(OnCallersLoop(0.9), cal)
    assert (plain.native_async, plain.caller_loop) == (True, False)
    assert (bound.native_async, bound.caller_loop) == (True, True)
