"""Observe mode is visible (docs/report.md, "Observe mode"): a real ``create_agent`` agent guarded in mode observe
writes runs and verdicts to SQLite, and ``critic-guard status`` and ``critic-guard report`` show them, with the
critic's AUROC and ECE once outcomes are recorded, checked against a direct computation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from calc_agent import PLAN, RIGHT, build_agent, calc_model, final_answer, task_input, thread
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.guard import CriticGuard
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware

runner = CliRunner()

BAD_STEPS = (None, 2, None, 3, 2, None)
"""One run per entry: None runs right, k gets step k's operand wrong (the run then answers wrongly)."""


def graded_critic(ctx: StepContext) -> Verdict:
    """0.95 for a wrong operand; else 0.15 at step 0, 0.25 at step 1, ... (0.55 at the final answer, step 4)."""
    calls = ctx.proposed.get("tool_calls") or []
    k = sum(1 for m in ctx.messages[:-1] if m["role"] == "assistant" and m.get("tool_calls"))
    if calls and k < len(PLAN) and calls[0]["arguments"]["b"] != PLAN[k][1]:
        return Verdict(0.95)
    return Verdict(0.15 + 0.1 * ctx.step)


def _observe(tmp_path: Path) -> tuple[str, CriticGuard, list[tuple[str, bool]]]:
    """Run the six tasks under an observe guard; return the store URL, the guard and (run id, success) per run."""
    url = f"sqlite:///{tmp_path / 'observe.db'}"
    guard = CriticGuard(graded_critic, agent_name="calc", mode="observe", store=url)
    results = []
    for i, bad in enumerate(BAD_STEPS):
        model, _ = calc_model(bad_step=bad)
        middleware = CriticGuardMiddleware(guard)
        state = build_agent(model, [middleware]).invoke(task_input(), thread(f"t{i}"))
        assert middleware.wait(30)  # observe judges off the user's path: the verdicts follow the run
        assert guard.store is not None
        run = guard.store.runs()[-1]
        results.append((run.run_id, final_answer(state["messages"]) == RIGHT))
    assert [ok for _, ok in results] == [bad is None for bad in BAD_STEPS]
    guard.store.flush()  # the guard batches step rows; the CLI reads the file through a connection of its own
    return url, guard, results


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _embedded(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="critic-guard-report">(.*?)</script>', page)
    assert match is not None
    parsed: dict[str, Any] = json.loads(match.group(1))
    return parsed


def _tagged(page: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for key, value in re.findall(r'<span class="num" data-key="([^"]+)">([^<]*)</span>', page):
        found.setdefault(key, set()).add(value)
    return found


def _check_tags(page: str, data: dict[str, Any]) -> None:
    """Every tagged number is the embedded value as shown (rates as percentages)."""
    for key, shown in _tagged(page).items():
        value = data[key]
        for text in shown:
            expected = 100.0 * value if key in {"flag_rate", "run_flag_rate"} else value
            assert float(text) == pytest.approx(expected, abs=0.0006 if "." in text else 0.5), (key, text)


def test_observe_runs_show_in_status_and_report_then_auroc_and_ece_once_outcomes_exist(tmp_path: Path) -> None:
    url, guard, results = _observe(tmp_path)
    assert guard.store is not None
    assert guard.store.guard_keys() == [] and guard.pairs() == [] and guard.transitions() == []

    # status: the key is listed with what is known (30 verdicts, the 3 wrong operands flagged at steps 2 and 3)
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    assert (row["guard_key"], row["state"], row["evidence"], row["last_transition"]) == (
        guard.guard_key,
        "observed",
        None,
        None,
    )
    observed = row["observed"]
    assert (observed["runs"], observed["judged_steps"], observed["flagged_steps"], observed["flagged_runs"]) == (
        6,
        30,
        3,
        3,
    )
    assert observed["flag_rate"] == pytest.approx(0.1) and (observed["outcomes"], observed["failures"]) == (0, 0)
    table = " ".join(_ok(["status", "--store", url]).split())
    assert guard.guard_key in table and "observed (runs only: no pairs" in table
    assert "judged steps 30, flagged 3 (flag rate 10.0%)" in table and "outcomes 0 (0 failed)" in table

    # report without outcomes: flag rate, verdicts by step, the score figure; critic quality says what is missing
    html = tmp_path / "before.html"
    assert _ok(["report", "--store", url, "--html", str(html), "--out", str(tmp_path / "fig")]).splitlines() == [
        f"wrote {html}",
        f"wrote {tmp_path / 'fig' / 'score_distribution.png'}",
    ]
    page = html.read_text()
    data = _embedded(page)
    assert (data["kind"], data["runs"], data["judged_steps"], data["flag_rate"]) == ("observe", 6, 30, 0.1)
    assert data["run_flag_rate"] == 0.5 and data["auroc"] is None and data["ece"] is None
    assert "Observed only: run a pilot next" in page and 'data-recommendation="run_pilot"' in page
    assert "no outcomes recorded yet" in page and "(guard.record_outcome(run_id, success), or a judge)" in page
    assert "<td>step 2</td><td>6</td><td>2</td><td>33.3%</td>" in page  # two of six runs flagged at step 2
    assert "<td>step 0</td><td>6</td><td>0</td><td>0.0%</td><td>0.150</td>" in page
    _check_tags(page, data)

    # outcomes recorded by the caller: AUROC and ECE appear
    for run_id, ok in results:
        guard.record_outcome(run_id, ok)
    guard.close()
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    assert (row["observed"]["outcomes"], row["observed"]["failures"]) == (6, 3)
    html = tmp_path / "after.html"
    _ok(["report", "--store", url, "--html", str(html)])
    page = html.read_text()
    data = _embedded(page)
    # the 15 verdicts of the 3 failed runs against the 15 of the 3 right ones
    failed = [0.15, 0.25, 0.95, 0.45, 0.55] * 2 + [0.15, 0.25, 0.35, 0.95, 0.55]
    right = [0.15, 0.25, 0.35, 0.45, 0.55] * 3
    u = mannwhitneyu(failed, right).statistic
    # by hand, a failed verdict's right verdicts below it (ties 1/2): 3*1.5 + 3*4.5 + 7.5 + 2*10.5 + 3*13.5 + 3*15
    assert u == 132.0 and data["auroc"] == pytest.approx(132 / 225)
    # ECE by hand: per distinct score (each in its own 0.1 bin) |score - share of its verdicts in failed runs|
    # 0.15: 6 (3 failed), 0.25: 6 (3), 0.35: 4 (1), 0.45: 5 (2), 0.55: 6 (3), 0.95: 3 (3)
    ece = (6 * 0.35 + 6 * 0.25 + 4 * 0.10 + 5 * 0.05 + 6 * 0.05 + 3 * 0.05) / 30
    assert data["ece"] == pytest.approx(ece) == pytest.approx(4.7 / 30)
    assert data["labeled_verdicts"] == 30 and (data["outcomes"], data["failures"]) == (6, 3)
    assert "AUROC (step scores against the run's outcome)" in page and "ROC curve and reliability diagram" in page
    _check_tags(page, data)


def test_a_pilot_without_a_judge_shows_its_open_pairs(tmp_path: Path) -> None:
    """Pairs that never complete (no judge) leave nothing for the pilot report: the observe report says why."""
    url = f"sqlite:///{tmp_path / 'pilot.db'}"
    guard = CriticGuard(graded_critic, agent_name="calc", mode="pilot", store=url)
    with guard:
        run = guard.start_run(run_id="r1")
        guard.open_pair(run, control_run_id=run, treatment_run_id=run, flagged=False)
    html = tmp_path / "r.html"
    _ok(["report", "--store", url, "--html", str(html)])
    page = html.read_text()
    assert _embedded(page)["open_pairs"] == 1
    assert "1 pair is open and will not complete until both of their runs have an outcome" in page
