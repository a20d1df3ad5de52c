"""The pilot report: the ALFWorld worked example, the verdict rule (interval and exact test agree, or inconclusive),
the exact power it is planned with, prior-only intervals, JSON shape, and arm-swap symmetry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critic_guard.stats import (
    Interval,
    McNemarResult,
    PairedCounts,
    PilotConclusion,
    analyze,
    decide,
    verdict_of,
    verdict_power,
)
from critic_guard.stats.power import EXACT_METHOD
from critic_guard.stats.report import EXACT_TEST, INTERVAL_TEST

ALFWORLD = PairedCounts(118, 16, 9, 7)
REQUIRED_KEYS = {
    "n", "n00", "n01", "n10", "n11", "p", "r", "d", "p_star", "net", "net_ci_low", "net_ci_high",
    "mcnemar_p", "mcnemar_midp", "prob_net_positive", "verdict", "prefer_selection",
}  # fmt: skip


def test_alfworld_worked_example_is_honestly_inconclusive() -> None:
    report = analyze(ALFWORLD)
    # The paper's point estimates say p = 0.893 > p_star = 0.825, i.e. intervene ...
    assert round(report.p.require(), 3) == 0.893 and round(report.p_star.require(), 3) == 0.825
    assert report.point_rule_intervene is True
    # ... but 25 discordant pairs cannot exclude zero: the interval, McNemar and the posterior all agree.
    assert report.verdict is PilotConclusion.INCONCLUSIVE
    assert report.net_interval.low < 0 < report.net_interval.high
    assert round(report.mcnemar.pvalue, 3) == 0.230
    assert 0.9 < report.posterior.prob_net_positive < 0.93
    assert report.prefer_selection is True and round(report.d_over_r.require(), 1) == 4.7
    # For the verdict's own rule (exact power, enumerated) it could only have detected |net| >= 9.6 points; the
    # observed 4.7 points would need 632 tasks (Connor's approximation for the asymptotic test alone says 599).
    assert report.power.method == EXACT_METHOD
    assert round(report.power.minimum_detectable_effect.require(), 3) == 0.096
    assert report.power.tasks_needed.require() == 632
    assert report.power.more_tasks_needed.require() == 482
    assert report.decided_by == f"{INTERVAL_TEST} and {EXACT_TEST}"  # neither rejects


def test_to_dict_has_the_documented_keys_and_is_json() -> None:
    data = json.loads(json.dumps(analyze(ALFWORLD).to_dict()))
    assert set(data) >= REQUIRED_KEYS
    assert (data["n"], data["n00"], data["n01"], data["n10"], data["n11"]) == (150, 118, 16, 9, 7)
    assert data["verdict"] == "inconclusive" and data["prefer_selection"] is True
    assert data["undefined"] == {} and data["alpha"] == 0.05 and data["tasks_needed"] == 632
    assert set(data["credible_intervals"]) == {"net", "p", "r", "d", "p_star", "p_minus_p_star"}
    assert data["credible_prior_only"] == [] and data["power_method"] == EXACT_METHOD
    assert data["decided_by"] == f"{INTERVAL_TEST} and {EXACT_TEST}"


def test_undefined_values_are_null_with_reasons() -> None:
    data = analyze(PairedCounts(0, 0, 6, 6)).to_dict()
    assert data["r"] is None and data["p_star"] is None and data["prefer_selection"] is None
    assert data["undefined"]["r"] == "no control failures: r (recovery rate) is undefined"
    assert "prefer_selection" in data["undefined"] and "point_rule_intervene" in data["undefined"]
    # The net effect is still well defined: 6 disruptions, 0 recoveries (exact p = 2/64 = 0.031).
    assert data["verdict"] == "harms"


def test_no_discordant_pairs_reports_undefined_power_figures() -> None:
    data = analyze(PairedCounts(10, 0, 0, 10)).to_dict()
    assert data["discordant_rate"] == 0.0 and data["minimum_detectable_effect"] is None
    assert "no discordant pairs" in data["undefined"]["tasks_needed"]
    assert data["verdict"] == "inconclusive"


def _exact(p: float) -> McNemarResult:
    return McNemarResult(recoveries=0, disruptions=0, alternative="two-sided", pvalue=p, midp=p)


def test_verdict_rule() -> None:
    assert decide(Interval(0.01, 0.2, 0.95, "x"), _exact(0.01)) == (
        PilotConclusion.HELPS,
        f"{INTERVAL_TEST} and {EXACT_TEST}",
    )
    assert decide(Interval(-0.2, -0.01, 0.95, "x"), _exact(0.05))[0] is PilotConclusion.HARMS  # p <= 1 - level
    assert decide(Interval(-0.2, 0.0, 0.95, "x"), _exact(0.01)) == (PilotConclusion.INCONCLUSIVE, INTERVAL_TEST)
    assert decide(Interval(0.0, 0.3, 0.95, "x"), _exact(0.2))[0] is PilotConclusion.INCONCLUSIVE
    # The interval excludes 0 but the exact test does not reject: inconclusive, and the exact test decided.
    assert decide(Interval(0.01, 0.2, 0.95, "x"), _exact(0.0625)) == (PilotConclusion.INCONCLUSIVE, EXACT_TEST)


@pytest.mark.parametrize(
    ("cells", "exact_p"),
    [
        ((4, 0, 4, 0), 0.125),  # 4 disruptions, no recovery: the interval alone said HARMS
        ((0, 5, 0, 0), 0.0625),  # 5 recoveries: the interval alone said HELPS (mid-p 0.031 would too)
        ((39, 10, 22, 79), 0.0501),  # the harmful demo pilot (seed 0): the interval alone said HARMS
    ],
)
def test_tables_where_the_interval_and_the_exact_test_disagree_are_inconclusive(
    cells: tuple[int, int, int, int], exact_p: float
) -> None:
    report = analyze(PairedCounts(*cells))
    assert report.net_interval.low > 0 or report.net_interval.high < 0  # the asymptotic interval excludes 0 ...
    assert round(report.mcnemar.pvalue, 4) == exact_p  # ... the exact test does not reject at 5%
    assert report.verdict is PilotConclusion.INCONCLUSIVE and report.decided_by == EXACT_TEST
    data = report.to_dict()
    assert (data["verdict"], data["decided_by"]) == ("inconclusive", EXACT_TEST)


def test_the_verdicts_false_rate_is_at_most_alpha_for_every_small_n() -> None:
    # Under no effect the discordant pairs split Binomial(m, 1/2): enumerate every table with m <= 40 and sum the
    # probability of a helps/harms verdict. The interval alone gives 12.5% at m = 4; the rule keeps it <= 5%.
    from scipy import stats

    for m in range(1, 41):
        false_rate = sum(
            stats.binom.pmf(k, m, 0.5)
            for k in range(m + 1)
            if verdict_of(PairedCounts(50, k, m - k, 50))[0] is not PilotConclusion.INCONCLUSIVE
        )
        assert false_rate <= 0.05, (m, false_rate)


def test_exact_power_is_what_the_verdict_achieves() -> None:
    # Simulate pilots at the planned size and apply the real verdict: its rate of "helps" matches the enumerated
    # power (and reaches 0.8, which Connor's n = 599 for the asymptotic test alone does not).
    effect, discordant = 7 / 150, 25 / 150
    n = analyze(ALFWORLD).power.tasks_needed.require()
    exact = verdict_power(int(n), effect, discordant)
    assert exact >= 0.8 > verdict_power(599, effect, discordant)
    rng = np.random.default_rng(4)
    cells = rng.multinomial(int(n), [(discordant + effect) / 2, (discordant - effect) / 2, 1 - discordant], 1500)
    helps = {
        (b, c): verdict_of(PairedCounts(0, b, c, int(n) - b - c))[0] is PilotConclusion.HELPS
        for b, c in {(int(b), int(c)) for b, c, _ in cells}
    }
    assert np.mean([helps[int(b), int(c)] for b, c, _ in cells]) == pytest.approx(exact, abs=0.035)


def test_intervals_of_undefined_estimates_are_flagged_prior_only() -> None:
    report = analyze(PairedCounts(10, 0, 0, 0))  # no control successes: d is undefined
    d = report.posterior.d
    assert (round(d.low, 3), round(d.high, 3)) == (0.025, 0.975)  # exactly the uniform prior's 95% interval
    assert set(report.prior_only()) == {"d", "p_star", "p_minus_p_star"}
    assert report.to_dict()["credible_prior_only"] == ["d", "p_minus_p_star", "p_star"]
    assert analyze(ALFWORLD).prior_only() == {}


def test_clear_cases_and_levels() -> None:
    assert analyze(PairedCounts(100, 30, 5, 65)).verdict is PilotConclusion.HELPS
    assert analyze(PairedCounts(100, 5, 30, 65)).verdict is PilotConclusion.HARMS
    # The level is the user's risk: 16 vs 9 gives Z(0) = 7/5 = 1.4 and exact p = 0.230; at 75% both reject
    # (z = 1.15, alpha 0.25), at 80% the interval does (z = 1.28) but the exact test does not, at 95% neither.
    assert analyze(ALFWORLD, level=0.75).verdict is PilotConclusion.HELPS
    at_80 = analyze(ALFWORLD, level=0.8)
    assert (at_80.verdict, at_80.decided_by) == (PilotConclusion.INCONCLUSIVE, EXACT_TEST)
    assert at_80.net_interval.width < analyze(ALFWORLD).net_interval.width


def test_no_pairs_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pairs"):
        analyze(PairedCounts(0, 0, 0, 0))


cells = st.integers(min_value=0, max_value=60)
MIRROR = {
    PilotConclusion.HELPS: PilotConclusion.HARMS,
    PilotConclusion.HARMS: PilotConclusion.HELPS,
    PilotConclusion.INCONCLUSIVE: PilotConclusion.INCONCLUSIVE,
}


@settings(max_examples=60, deadline=None)
@given(cells, cells, cells, cells)
def test_swapping_arms_mirrors_the_report(a: int, b: int, c: int, d: int) -> None:
    counts = PairedCounts(a, b, c, d)
    if counts.n == 0:
        return
    report, mirrored = analyze(counts, draws=500), analyze(counts.swapped(), draws=500)
    assert mirrored.verdict is MIRROR[report.verdict]
    assert mirrored.net_interval.low == pytest.approx(-report.net_interval.high, abs=1e-9)
    assert mirrored.mcnemar.pvalue == pytest.approx(report.mcnemar.pvalue)
    assert mirrored.posterior.prob_net_positive == pytest.approx(1 - report.posterior.prob_net_positive)
    assert mirrored.decided_by == report.decided_by
    # The verdict is a statement about the interval and the exact test, consistent with the point estimate.
    net = counts.net.require()
    if report.verdict is not PilotConclusion.INCONCLUSIVE:
        assert report.mcnemar.pvalue <= 0.05 and 0.0 not in report.net_interval
    if report.verdict is PilotConclusion.HELPS:
        assert net > 0 and report.point_rule_intervene in (True, None)
    if report.verdict is PilotConclusion.HARMS:
        assert net < 0
