"""The pilot report: the ALFWorld worked example, the verdict rule, JSON shape, and arm-swap symmetry."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critic_guard.stats import Decision, Interval, PairedCounts, analyze, decide

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
    assert report.verdict is Decision.INCONCLUSIVE
    assert report.net_interval.low < 0 < report.net_interval.high
    assert round(report.mcnemar.pvalue, 3) == 0.230
    assert 0.9 < report.posterior.prob_net_positive < 0.93
    assert report.prefer_selection is True and round(report.d_over_r.require(), 1) == 4.7
    # It could only have detected |net| >= 9.3 points; the observed 4.7 points would need ~600 tasks.
    assert round(report.power.minimum_detectable_effect.require(), 3) == 0.093
    assert report.power.tasks_needed.require() == 599
    assert report.power.more_tasks_needed.require() == 449


def test_to_dict_has_the_documented_keys_and_is_json() -> None:
    data = json.loads(json.dumps(analyze(ALFWORLD).to_dict()))
    assert set(data) >= REQUIRED_KEYS
    assert (data["n"], data["n00"], data["n01"], data["n10"], data["n11"]) == (150, 118, 16, 9, 7)
    assert data["verdict"] == "inconclusive" and data["prefer_selection"] is True
    assert data["undefined"] == {} and data["alpha"] == 0.05 and data["tasks_needed"] == 599
    assert set(data["credible_intervals"]) == {"net", "p", "r", "d", "p_star", "p_minus_p_star"}


def test_undefined_values_are_null_with_reasons() -> None:
    data = analyze(PairedCounts(0, 0, 5, 5)).to_dict()
    assert data["r"] is None and data["p_star"] is None and data["prefer_selection"] is None
    assert data["undefined"]["r"] == "no control failures: r (recovery rate) is undefined"
    assert "prefer_selection" in data["undefined"] and "point_rule_intervene" in data["undefined"]
    assert data["verdict"] == "harms"  # the net effect is still well defined: 5 disruptions, 0 recoveries


def test_no_discordant_pairs_reports_undefined_power_figures() -> None:
    data = analyze(PairedCounts(10, 0, 0, 10)).to_dict()
    assert data["discordant_rate"] == 0.0 and data["minimum_detectable_effect"] is None
    assert "no discordant pairs" in data["undefined"]["tasks_needed"]
    assert data["verdict"] == "inconclusive"


def test_verdict_rule() -> None:
    assert decide(Interval(0.01, 0.2, 0.95, "x")) is Decision.HELPS
    assert decide(Interval(-0.2, -0.01, 0.95, "x")) is Decision.HARMS
    assert decide(Interval(-0.2, 0.0, 0.95, "x")) is Decision.INCONCLUSIVE
    assert decide(Interval(0.0, 0.3, 0.95, "x")) is Decision.INCONCLUSIVE


def test_clear_cases_and_levels() -> None:
    assert analyze(PairedCounts(100, 30, 5, 65)).verdict is Decision.HELPS
    assert analyze(PairedCounts(100, 5, 30, 65)).verdict is Decision.HARMS
    # The level is the user's risk: 16 vs 9 gives Z(0) = 7/5 = 1.4, above z = 1.28 at 80% but below 1.96 at 95%.
    assert analyze(ALFWORLD, level=0.8).verdict is Decision.HELPS
    assert analyze(ALFWORLD, level=0.8).net_interval.width < analyze(ALFWORLD).net_interval.width


def test_no_pairs_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pairs"):
        analyze(PairedCounts(0, 0, 0, 0))


cells = st.integers(min_value=0, max_value=60)
MIRROR = {Decision.HELPS: Decision.HARMS, Decision.HARMS: Decision.HELPS, Decision.INCONCLUSIVE: Decision.INCONCLUSIVE}


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
    # The verdict is a statement about the interval, consistent with the point estimate.
    net = counts.net.require()
    if report.verdict is Decision.HELPS:
        assert net > 0 and report.point_rule_intervene in (True, None)
    if report.verdict is Decision.HARMS:
        assert net < 0
