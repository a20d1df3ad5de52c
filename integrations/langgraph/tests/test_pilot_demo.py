"""The demo suite behind ``make demo``: a real pilot on the simulator that ends with the decision its docstring
promises (helps, with recoveries and disruptions both present), the harmful demo whose interval excludes 0 but whose
exact test does not (inconclusive at 95%), and the command line runs it."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.sim_truth import sim_truth
from critic_guard.cli import app
from critic_guard.pilot import run_pilot
from critic_guard.stats import analyze
from critic_guard_langgraph.demo import DEMO_TASKS, harmful, suite


@pytest.mark.slow
def test_the_demo_pilot_shows_recoveries_and_disruptions_and_decides_helps(tmp_path: Path) -> None:
    demo = suite(seed=0)
    with demo.guard(mode="pilot", store=f"sqlite:///{tmp_path / 'demo.db'}") as guard:
        result = asyncio.run(run_pilot(demo, guard, concurrency=4))
    t = result.tally
    assert (t.total, t.done, t.incomplete, t.open, t.unpaired) == (DEMO_TASKS, DEMO_TASKS, 0, 0, 0)
    assert (t.n01, t.n10) == (29, 8) and 0 < t.flagged < DEMO_TASKS  # README quotes seed 0's cells
    assert result.report is not None and result.report.verdict.value == "helps"
    truth = sim_truth(demo.critic.scenario, "fork", n=200_000)  # type: ignore[attr-defined]
    low, high = result.report.net_interval.low, result.report.net_interval.high
    assert low < truth.net < high  # the pilot's interval covers the true effect of this world

    # The critic's name says what its 0.85 is (mistaken vs right steps); the report's AUROC, of every step's score
    # against its run's outcome (shadow branches included), is lower, and the page says which one it shows.
    assert guard.critic.name == "sim-critic-mistake-auroc0.85-shift0-s0-v1"
    html = tmp_path / "report.html"
    report = CliRunner().invoke(app, ["report", "--store", f"sqlite:///{tmp_path / 'demo.db'}", "--html", str(html)])
    assert report.exit_code == 0, report.output
    page = html.read_text()
    assert (
        "AUROC (step scores against the run&#x27;s outcome)" in page
        or "AUROC (step scores against the run's outcome)" in page
    )
    assert re.search(r'data-key="auroc">0\.543<', page) and "production runs and shadow branches" in page


@pytest.mark.slow
def test_the_harmful_demo_shows_the_paradox_a_good_critic_whose_rollbacks_harm(tmp_path: Path) -> None:
    demo = harmful(seed=0)
    assert demo.critic.scenario.critic_auroc == 0.85  # type: ignore[attr-defined]  # as good as the helpful demo's
    with demo.guard(mode="pilot", store=f"sqlite:///{tmp_path / 'harm.db'}") as guard:
        result = asyncio.run(run_pilot(demo, guard, concurrency=4))
    t = result.tally
    assert t.done == DEMO_TASKS and t.n10 > t.n01 > 0
    report = result.report
    assert report is not None
    truth = sim_truth(demo.critic.scenario, "fork", n=200_000)  # type: ignore[attr-defined]
    assert truth.net < -0.1 and report.net_interval.high < 0  # the interval excludes 0; the true net is -0.16 ...
    # ... but with 10 recoveries against 22 disruptions the exact McNemar p is 0.0501 > 0.05: at 95% the honest
    # verdict is inconclusive, and the report says the exact test decided (at 90% both agree: harms).
    assert (report.verdict.value, report.decided_by) == ("inconclusive", "exact McNemar test")
    assert round(report.mcnemar.pvalue, 4) == 0.0501
    assert analyze(report.counts, level=0.9).verdict.value == "harms"


def test_critic_guard_demo_runs_the_demo_suite_as_make_demo_does(tmp_path: Path) -> None:
    args = ["demo", "--store", f"sqlite:///{tmp_path / 'd.db'}"]
    args += ["--trace-file", str(tmp_path / "t.jsonl"), "--tasks", "10", "--seed", "3", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tasks"], data["done"]) == (10, 10)
    assert data["guard_key"].split("/")[:2] == ["demo-seed3", "sim-critic-mistake-auroc0.85-shift0-s3-v1"]
    assert sum(data["pairs"].values()) == 10
    pilot = CliRunner().invoke(app, ["pilot", "critic_guard_langgraph.demo:suite", *args[1:]])
    assert pilot.exit_code == 0, pilot.output
    again = json.loads(pilot.stdout)  # the same pilot: nothing left to run, the same pairs
    assert (again["guard_key"], again["ran"], again["skipped"], again["pairs"]) == (
        data["guard_key"],
        0,
        10,
        data["pairs"],
    )
