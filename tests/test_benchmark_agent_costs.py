"""The measured-cost benchmark: resampling by flag state, the world handed to the decision benchmark, the smoke run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import agent_costs
from benchmarks.agent_costs import MeasuredCosts, TaskCost, decision_scenario, measured_shape
from benchmarks.decision_model import RunShape, TaskOutcomes
from benchmarks.sim_truth import sim_truth
from critic_guard_langgraph.sim import SCENARIOS

SHAPE = RunShape.make(6, 2)


def cost(design: str, flag_step: int, agent: int, critic: int = 0) -> TaskCost:
    return TaskCost("t", design, flag_step >= 0, flag_step, True, True, agent, critic)  # type: ignore[arg-type]


def outcomes(design: str, flag_steps: list[int]) -> TaskOutcomes:
    steps = np.array(flag_steps, dtype=np.int64)
    n = len(flag_steps)
    return TaskOutcomes(design, np.ones(n, bool), np.ones(n, bool), steps >= 0, steps, SHAPE)  # type: ignore[arg-type]


def test_measured_costs_resample_by_design_and_first_flag_step() -> None:
    measured = {
        "fork": [cost("fork", -1, 6, 6), cost("fork", 2, 11, 10), cost("fork", 4, 8, 7)],
        "full": [cost("full", -1, 12), cost("full", 3, 14)],
    }
    costs = MeasuredCosts(measured, seed=1)  # type: ignore[arg-type]
    fork = costs(outcomes("fork", [-1, 2, 4, 2, -1]))
    assert fork.agent.tolist() == [6, 11, 8, 11, 6] and fork.critic.tolist() == [6, 10, 7, 10, 6]
    # step 5 was never measured: drawn among the flagged tasks (11 or 8), never the unflagged one
    assert set(costs(outcomes("fork", [5] * 50)).agent.tolist()) == {8, 11}
    assert costs(outcomes("full", [-1, 3])).agent.tolist() == [12, 14]
    again = outcomes("fork", [5] * 50)
    assert costs(again).agent.tolist() == costs(again).agent.tolist()  # the same tasks cost the same


def test_measured_costs_need_tasks() -> None:
    with pytest.raises(ValueError, match="no measured tasks"):
        MeasuredCosts({"fork": []})


def test_the_decision_world_has_the_simulators_truth() -> None:
    harm = next(s for s in SCENARIOS if s.name == "hotpotqa_harm")
    truth = sim_truth(harm, "fork", n=200_000)
    world = decision_scenario(truth)
    assert world.p == truth.p
    assert world.r == pytest.approx(truth.r) and world.d == pytest.approx(truth.d)
    assert world.truth == -1
    null = decision_scenario(sim_truth(next(s for s in SCENARIOS if s.name == "null"), "fork"))
    assert null.truth == 0 and "exactly null" in null.description


def test_measured_shape_is_the_first_flag_distribution() -> None:
    shape = measured_shape(
        SCENARIOS[0], [cost("fork", 2, 9), cost("fork", 2, 9), cost("fork", 5, 7), cost("fork", -1, 6)]
    )
    assert shape.flag_step_pmf == pytest.approx((0, 0, 2 / 3, 0, 0, 1 / 3))
    assert measured_shape(SCENARIOS[0], [cost("fork", -1, 6)]) == RunShape.make(6, 2)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("agent-costs")
    report = agent_costs.main(["--smoke", "--json", str(out / "r.json"), "--plots", str(out)])
    return report, out


@pytest.mark.slow
def test_smoke_run_measures_both_designs(smoke: tuple[dict[str, Any], Path]) -> None:
    report, out = smoke
    assert json.loads((out / "r.json").read_text())["config"] == report["config"]
    assert (out / "agent_calls_per_correct.png").stat().st_size > 0
    for s in report["scenarios"]:
        steps = s["scenario"]["steps"]
        fork, full = s["per_task"]["fork"], s["per_task"]["full"]
        assert fork["n"] == full["n"] == report["config"]["tasks"]
        # an unflagged fork costs one run; a full pair costs two runs plus the treatment run's retries
        assert steps <= fork["agent_calls"] < full["agent_calls"]
        assert full["agent_calls"] >= 2 * steps
        for method in agent_costs.METHODS:
            for label in ("measured", "modelled"):
                row = s["per_decision"][label][method]
                assert row["fork"]["agent_calls_mean"] > 0 and 0 <= row["fork"]["correct_rate"] <= 1


def test_unflagged_fork_tasks_cost_exactly_one_run(tmp_path: Path) -> None:
    scenario = dataclasses.replace(SCENARIOS[2], critic_shift=-20.0)  # a critic that never flags
    tasks = agent_costs.sim_tasks(4, seed=3, steps=scenario.steps)
    measured = agent_costs.run_fork(scenario, tasks, tmp_path)
    assert [(t.flagged, t.agent_calls, t.critic_calls) for t in measured] == [
        (False, scenario.steps, scenario.steps)
    ] * 4
    full = agent_costs.run_full(scenario, tasks, tmp_path)
    assert [t.agent_calls for t in full] == [2 * scenario.steps] * 4
