"""Dirichlet posterior: the exact P(net > 0) against Monte Carlo, sampled intervals against exact Beta marginals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from critic_guard.stats import PairedCounts, dirichlet_posterior, prob_net_positive

ALFWORLD = PairedCounts(118, 16, 9, 7)


def test_exact_probability_agrees_with_direct_simulation() -> None:
    rng = np.random.default_rng(123)
    theta = rng.dirichlet(np.array(ALFWORLD.as_tuple()) + 1.0, size=200_000)
    simulated = float(np.mean(theta[:, 1] > theta[:, 2]))
    assert prob_net_positive(ALFWORLD) == pytest.approx(simulated, abs=0.003)
    assert round(prob_net_positive(ALFWORLD), 3) == 0.916


def test_exact_probability_by_hand_for_tiny_tables() -> None:
    # One recovery, no disruption: theta01/(theta01+theta10) ~ Beta(2, 1), P(> 1/2) = 1 - 0.5^2 = 0.75.
    assert prob_net_positive(PairedCounts(3, 1, 0, 3)) == pytest.approx(0.75)
    assert prob_net_positive(PairedCounts(3, 0, 0, 3)) == pytest.approx(0.5)


def test_sampled_intervals_match_exact_beta_marginals() -> None:
    post = dirichlet_posterior(ALFWORLD, level=0.95, draws=100_000, seed=7)
    n00, n01, n10, n11 = ALFWORLD.as_tuple()
    exact = {
        "p": stats.beta(n00 + n01 + 2, n10 + n11 + 2),
        "r": stats.beta(n01 + 1, n00 + 1),
        "d": stats.beta(n10 + 1, n11 + 1),
    }
    for name, dist in exact.items():
        interval = getattr(post, name)
        assert interval.low == pytest.approx(dist.ppf(0.025), abs=0.004), name
        assert interval.high == pytest.approx(dist.ppf(0.975), abs=0.004), name


def test_seeded_and_reproducible() -> None:
    a = dirichlet_posterior(ALFWORLD, seed=3)
    assert a == dirichlet_posterior(ALFWORLD, seed=3)
    assert a.net != dirichlet_posterior(ALFWORLD, seed=4).net
    assert (a.seed, a.draws) == (3, 20_000)
    assert set(a.intervals()) == {"net", "p", "r", "d", "p_star", "p_minus_p_star"}


def test_alfworld_credible_interval_for_net_straddles_zero() -> None:
    post = dirichlet_posterior(ALFWORLD)
    assert post.net.low < 0.0 < post.net.high
    assert post.p_minus_p_star.low < 0.0 < post.p_minus_p_star.high
    assert post.net.method == "Dirichlet(1,1,1,1) posterior" and post.net.level == 0.95


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="draws"):
        dirichlet_posterior(ALFWORLD, draws=10)
    with pytest.raises(ValueError, match="level"):
        dirichlet_posterior(ALFWORLD, level=0.0)


cells = st.integers(min_value=0, max_value=40)


@given(cells, cells, cells, cells)
def test_probability_is_bounded_monotone_and_antisymmetric(a: int, b: int, c: int, d: int) -> None:
    counts = PairedCounts(a, b, c, d)
    prob = prob_net_positive(counts)
    assert 0.0 < prob < 1.0
    assert prob_net_positive(PairedCounts(a, b + 1, c, d)) > prob  # one more recovery is more evidence of benefit
    assert prob_net_positive(PairedCounts(a, b, c + 1, d)) < prob
    assert prob_net_positive(counts.swapped()) == pytest.approx(1.0 - prob)
