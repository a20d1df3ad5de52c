"""The decision-quality benchmark: the world model's exact cells, the methods' rules, costs, and the smoke run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import decision
from benchmarks.decision import HARMS, HELPS, INCONCLUSIVE, NO_GO, VERDICT_CODE
from benchmarks.decision_model import (
    DESIGNS,
    SCENARIOS,
    ModelledCosts,
    RunShape,
    Scenario,
    TaskOutcomes,
    binormal_auroc,
    cell_probabilities,
    rates_of_cells,
    simulate_tasks,
)
from critic_guard.stats import MonitorState, PairedCounts, analyze, pair_to_x

NULL = next(s for s in SCENARIOS if s.name == "null")
ALFWORLD = next(s for s in SCENARIOS if s.name == "alfworld_small_help")


@pytest.mark.parametrize("icc", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_exact_cells_match_a_seeded_simulation(scenario: Scenario, design: str, icc: float) -> None:
    n = 200_000
    tasks = simulate_tasks(scenario, design, icc, (n,), np.random.default_rng(11))  # type: ignore[arg-type]
    observed = np.bincount(tasks.cell_index, minlength=4) / n
    exact = cell_probabilities(scenario, design, icc)  # type: ignore[arg-type]
    assert exact.sum() == pytest.approx(1.0) and np.all(exact >= 0)
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(observed - exact) <= 4.5 * se + 1e-12), (observed, exact)


def test_model_maps_to_the_papers_rates() -> None:
    # ALFWorld-like: the paper's pilot rates, by construction tpr * r_flag and fpr * d_flag.
    rates = rates_of_cells(cell_probabilities(ALFWORLD, "fork", 0.5))
    assert rates["p"] == pytest.approx(0.893)
    assert rates["r"] == pytest.approx(0.119)
    assert rates["d"] == pytest.approx(0.5625)
    assert rates["p_star"] == pytest.approx(0.5625 / (0.119 + 0.5625))
    assert rates["net"] == pytest.approx(0.893 * 0.119 - 0.107 * 0.5625) == pytest.approx(ALFWORLD.net)
    for scenario in SCENARIOS:
        fork = cell_probabilities(scenario, "fork", 0.5)
        # identical reruns (icc = 1) make the full design the fork design; any icc keeps the net effect
        np.testing.assert_allclose(cell_probabilities(scenario, "full", 1.0), fork, atol=1e-12)
        for icc in (0.0, 0.3, 0.9):
            full = rates_of_cells(cell_probabilities(scenario, "full", icc))
            assert full["net"] == pytest.approx(scenario.net, abs=1e-12)
            assert full["discordant"] >= rates_of_cells(fork)["discordant"] - 1e-12  # rerun noise only adds flips
    # By hand: null scenario, icc 0: f = 0.5 for every task and g = (1 - d) - (1 - r - d) f = 0.85 - 0.35 = 0.5,
    # so the control and treatment runs are independent fair coins.
    full0 = cell_probabilities(NULL, "full", 0.0)
    np.testing.assert_allclose(full0, [0.25, 0.25, 0.25, 0.25], atol=1e-12)
    assert NULL.truth == 0 and ALFWORLD.truth == 1


def test_binormal_auroc() -> None:
    assert binormal_auroc(0.5, 0.5) == pytest.approx(0.5)
    assert binormal_auroc(0.8413447460685429, 0.5) == pytest.approx(0.7602499389065233)  # Phi(1/sqrt 2)
    with pytest.raises(ValueError):
        binormal_auroc(1.0, 0.2)


def test_paper_rule_reproduces_the_alfworld_pilot_and_undefined_cases() -> None:
    tables = np.asarray(
        [
            [118, 16, 9, 7],  # the paper's ALFWorld pilot: p 0.893 > p_star 0.825 -> intervene
            [30, 5, 3, 12],  # more recoveries than disruptions -> deploy
            [30, 3, 5, 12],  # fewer -> do not deploy
            [20, 4, 0, 0],  # no control successes: d undefined -> do not deploy, even with recoveries
            [0, 0, 3, 7],  # no control failures: r undefined -> do not deploy
            [10, 0, 0, 10],  # no flips: p_star undefined -> do not deploy
        ]
    )
    assert decision.paper_rule(tables).tolist() == [HELPS, HELPS, NO_GO, NO_GO, NO_GO, NO_GO]
    # the same as the engine's point rule on every table of 6 pairs (None -> do not deploy)
    small = np.asarray([c for c in itertools.product(range(7), repeat=4) if sum(c) == 6])
    expected = [HELPS if analyze(PairedCounts(*map(int, c)), draws=100).point_rule_intervene else NO_GO for c in small]
    assert decision.paper_rule(small).tolist() == expected


def test_fast_pilot_verdicts_equal_analyze() -> None:
    tables = np.asarray([c for c in itertools.product(range(11), repeat=4) if sum(c) == 10])
    fast = decision.pilot_verdicts(tables, 0.95, full_report=False)
    full = decision.pilot_verdicts(tables, 0.95, full_report=True)
    each = [VERDICT_CODE[analyze(PairedCounts(*map(int, c)), draws=100).verdict] for c in tables]
    assert fast.tolist() == full.tolist() == each  # the (n01, n10, n) shortcut loses nothing
    # all three verdicts occur, and the rule is McNemar's, the exact test agreeing with the interval: 5 recoveries,
    # 0 disruptions is inconclusive (Z = sqrt 5 > 1.96, but exact p = 1/16 > 0.05), 6 of them help (p = 1/32)
    assert set(full.tolist()) == {HELPS, HARMS, INCONCLUSIVE}
    row = np.flatnonzero((tables == [5, 5, 0, 0]).all(axis=1))[0]
    assert full[row] == INCONCLUSIVE
    row = np.flatnonzero((tables == [4, 6, 0, 0]).all(axis=1))[0]
    assert full[row] == HELPS


def test_wrong_and_correct() -> None:
    v = np.asarray([HELPS, HARMS, INCONCLUSIVE, NO_GO])
    assert decision.wrong(v, 1).tolist() == [False, True, False, True]
    assert decision.wrong(v, -1).tolist() == [True, False, False, False]
    assert decision.wrong(v, 0).tolist() == [True, True, False, False]
    assert decision.correct(v, 1).tolist() == [True, False, False, False]
    assert decision.correct(v, -1).tolist() == [False, True, False, True]
    assert decision.correct(v, 0).tolist() == [False, False, True, True]


def test_sequential_decisions_match_scalar_monitor_updates() -> None:
    scenario = next(s for s in SCENARIOS if s.name == "clear_harm")
    tasks = simulate_tasks(scenario, "fork", 0.5, (6, 300), np.random.default_rng(3))
    x = (tasks.control.astype(float) - tasks.treatment + 1.0) / 2.0
    verdicts, used = decision.sequential_decisions(x, 0.05)
    for row in range(6):
        state = MonitorState.start(0.05, split=False)  # sequential_decisions takes alpha per e-process
        verdict, stop = INCONCLUSIVE, 300
        for t in range(300):
            state = state.update_pair(bool(tasks.control[row, t]), bool(tasks.treatment[row, t]))
            assert pair_to_x(bool(tasks.control[row, t]), bool(tasks.treatment[row, t])) == x[row, t]
            if state.harm_proven or state.benefit_proven:  # harm first, as in the lifecycle
                verdict, stop = (HARMS if state.harm_proven else HELPS), t + 1
                break
        assert (verdicts[row], used[row]) == (verdict, stop)
    assert (verdicts == HARMS).sum() >= 5  # net = -0.113: harm is proven well within 300 tasks


def test_null_sequential_false_decisions_stay_below_alpha() -> None:
    """Ville's bound per e-process; alpha/2 per side bounds the total. 2,000 seeded runs of 600 null tasks."""
    tasks = simulate_tasks(NULL, "fork", 0.5, (2000, 600), np.random.default_rng(2024))
    x = (tasks.control.astype(float) - tasks.treatment + 1.0) / 2.0
    verdicts, _ = decision.sequential_decisions(x, 0.05)
    false_helps, false_harms = (verdicts == HELPS).mean(), (verdicts == HARMS).mean()
    assert false_helps <= 0.8 * 0.05 and false_harms <= 0.8 * 0.05, (false_helps, false_harms)
    split, _ = decision.sequential_decisions(x, 0.025)
    assert (split != INCONCLUSIVE).mean() <= 0.8 * 0.05


def test_modelled_costs_by_hand() -> None:
    shape = RunShape.make(steps_per_run=10, min_step=2)
    assert shape.flag_step_pmf[:2] == (0.0, 0.0) and shape.mean_flag_step == pytest.approx(5.5)
    flagged = np.asarray([True, False])
    steps = np.asarray([3, -1])
    both = np.asarray([True, True])
    fork = TaskOutcomes("fork", both, both, flagged, steps, shape)
    full = TaskOutcomes("full", both, both, flagged, steps, shape)
    calls = ModelledCosts()
    assert calls(fork).agent.tolist() == [10 + 7, 10]  # served run + treatment branch from step 3
    assert calls(full).agent.tolist() == [21, 20]  # two runs + the re-asked step
    assert calls(fork).critic.tolist() == calls(full).critic.tolist() == [11, 10]
    scenario = SCENARIOS[0]
    sim = simulate_tasks(scenario, "fork", 0.5, (200_000,), np.random.default_rng(8), shape)
    mean = ModelledCosts.expected_agent_calls(scenario, "fork", shape)
    assert calls(sim).agent.mean() == pytest.approx(mean, rel=0.01)
    assert ModelledCosts.expected_agent_calls(scenario, "full", shape) == pytest.approx(
        20 + scenario.p * scenario.tpr + (1 - scenario.p) * scenario.fpr
    )


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        Scenario("x", "", p=1.0, tpr=0.5, fpr=0.5, r_flag=0.1, d_flag=0.1)
    with pytest.raises(ValueError):
        Scenario("x", "", p=0.5, tpr=0.0, fpr=0.0, r_flag=0.1, d_flag=0.1)
    with pytest.raises(ValueError):
        cell_probabilities(NULL, "half", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RunShape.make(10, 10)
    with pytest.raises(ValueError):
        RunShape.make(10, 2, "middle")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[decision.BenchmarkResult, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("decision")
    result = decision.main(["--smoke", "--json", str(out / "r.json"), "--plots", str(out)])
    return result, json.loads((out / "r.json").read_text()), out


@pytest.mark.slow
def test_smoke_run_structure(smoke: tuple[decision.BenchmarkResult, dict[str, Any], Path]) -> None:
    result, data, out = smoke
    assert result.seconds < 15
    assert data["config"]["replications"] == 200 and data["config"]["task_cap"] == 600
    assert set(data["labels"]) == {"SIMULATED", "MODELLED"}
    assert [s["name"] for s in data["scenarios"]] == [s.name for s in SCENARIOS]
    for s in data["scenarios"]:
        methods = {(m["method"], m["design"], m["note"]) for m in s["methods"]}
        expected = 7 if s["truth"]["sign"] == 0 else 10  # three oracle rows, none for a null effect
        assert len(methods) == expected
        for m in s["methods"]:
            total = m["deploy_rate"] + m["reject_rate"] + m["inconclusive_rate"]
            assert total == pytest.approx(1.0)
            assert 0 <= m["wrong_rate"] <= m["wrong_rate_upper95"] <= 1
            assert m["replications"] == 200
        assert [pt["n"] for pt in s["pilots"]] == [25, 50, 100]
        assert set(s["curve"]) == {"paper rule", "fixed pilot"}
        assert s["truth"]["designs"]["fork"]["net"] == pytest.approx(s["truth"]["net"])
    assert len(data["targets"]) == len(SCENARIOS)
    for name in ("decision_error_vs_tasks.png", "p_vs_pstar.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_smoke_run_findings(smoke: tuple[decision.BenchmarkResult, dict[str, Any], Path]) -> None:
    result, _, _ = smoke
    clear_help = result.scenario("clear_help")
    seq = clear_help.method("sequential", "fork")
    assert seq["correct_rate"] == 1.0 and seq["tasks_mean"] < 100  # net +0.18 is proven quickly
    assert (
        clear_help.method("fixed pilot", "fork")["correct_rate"]
        > clear_help.method("fixed pilot", "full")["correct_rate"]
    )  # same 50 tasks, fewer noise flips
    assert clear_help.ratios["calls_full_over_fork"]["sequential"] > 2
    for s in result.scenarios:  # the paper's rule never abstains; the 95% pilot is mostly inconclusive at 50 tasks
        assert s.method("paper rule", "full")["inconclusive_rate"] == 0.0
    for s in result.scenarios:  # the simulated 50-task pilots agree with the exact enumeration
        for design in ("fork", "full"):
            m = s.method("fixed pilot", design)
            for key in ("wrong_rate", "correct_rate"):
                exact = m[f"exact_{key}"]
                assert abs(m[key] - exact) <= 4 * np.sqrt(exact * (1 - exact) / 200) + 0.01, (s.scenario.name, key)
    null = result.scenario("null")
    assert null.method("paper rule", "full")["wrong_rate"] > 0.3  # deploys a useless intervention ~half the time


def test_exact_pilot_rates_by_an_independent_sum() -> None:
    """Null scenario, fork, 20 tasks: discordant m ~ Bin(20, 0.15), recoveries ~ Bin(m, 1/2) given m."""
    from scipy import stats

    from critic_guard.stats import decide, mcnemar, tango_interval

    rates = decision.exact_pilot_rates(cell_probabilities(NULL, "fork", 0.5), 20, 0.95, 0)
    expected = 0.0
    for m in range(21):
        for b in range(m + 1):
            counts = PairedCounts(20 - m, b, m - b, 0)
            verdict, _ = decide(tango_interval(counts, 0.95), mcnemar(counts))
            if verdict.value != "inconclusive":
                expected += stats.binom.pmf(m, 20, 0.15) * stats.binom.pmf(b, m, 0.5)
    assert rates["exact_wrong_rate"] == pytest.approx(expected, rel=1e-9)
    assert rates["exact_wrong_rate"] + rates["exact_correct_rate"] == pytest.approx(1.0)
    assert 0.0 < rates["exact_wrong_rate"] < 0.05
