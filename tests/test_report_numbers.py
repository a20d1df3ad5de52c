"""Every number on the report page against ``critic-guard analyze --json`` on the same pairs, and the report's own
numbers (recommendation, min_step, bands, monitor band, ROC) against their definitions."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report_data import build_pilot_store
from typer.testing import CliRunner

from critic_guard.calibration import critic_quality
from critic_guard.cli import app
from critic_guard.lifecycle import GuardState
from critic_guard.report.build import build_report
from critic_guard.report.data import PairPoint, ReportData, StoreExtras, from_store
from critic_guard.report.numbers import Recommendation, compute, recommend
from critic_guard.stats import MonitorState, PairedCounts, analyze
from critic_guard.store import SQLiteStore

runner = CliRunner()
PILOT_FILE = Path(__file__).resolve().parent.parent / "critic_guard" / "data" / "alfworld_pilot.jsonl"


class _Page(HTMLParser):
    """The tagged numbers (``data-key`` -> shown texts), the embedded JSON, and the visible text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.numbers: dict[str, list[str]] = {}
        self.embedded: dict[str, Any] | None = None
        self.text: list[str] = []
        self._key: str | None = None
        self._script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "span" and found.get("data-key"):
            self._key = found["data-key"]
        self._script = tag == "script" and found.get("id") == "critic-guard-report"

    def handle_endtag(self, tag: str) -> None:
        self._key, self._script = None, False

    def handle_data(self, data: str) -> None:
        if self._script:
            self.embedded = json.loads(data)
            return
        self.text.append(data)
        if self._key is not None:
            self.numbers.setdefault(self._key, []).append(data)


def _resolve(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def _shown(value: float | None, text: str) -> bool:
    """Whether ``text`` is ``value`` as the page formats it (digits as shown, a '+' when shown)."""
    if value is None:
        return text == "undefined"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return format(value, f"{'+' if text.startswith('+') else ''}.{decimals}f") == text


def _write_pairs(data: ReportData, path: Path) -> Path:
    path.write_text("".join(json.dumps({"control": p.control, "treatment": p.treatment}) + "\n" for p in data.pairs))
    return path


def _analyze_json(pairs_file: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["analyze", str(pairs_file), "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _store_data(tmp_path: Path) -> ReportData:
    path = tmp_path / "pilot.db"
    key = build_pilot_store(path)
    with SQLiteStore(path) as store:
        return from_store(store, key, source="test")


def _file_data(rows: list[tuple[bool, bool]]) -> ReportData:
    return ReportData("rows", None, tuple(PairPoint(c, t) for c, t in rows))


ALL_CONTROL_OK = [(True, True)] * 6 + [(True, False)] * 2  # no control failures: r, p_star, d/r undefined


@pytest.mark.parametrize("source", ["store", "alfworld", "undefined"])
def test_every_number_on_the_page_matches_analyze_json(source: str, tmp_path: Path) -> None:
    if source == "store":
        data = _store_data(tmp_path)
    elif source == "alfworld":
        data = ReportData("alfworld", None, tuple(PairPoint(c, t) for c, t in _pairs_of(PILOT_FILE)))
    else:
        data = _file_data(ALL_CONTROL_OK)
    expected = _analyze_json(_write_pairs(data, tmp_path / "pairs.jsonl"))
    page = _Page(build_report(data).html)

    assert page.embedded is not None
    assert page.embedded["analysis"] == expected  # the embedded block is analyze --json, value for value
    required = {"analysis.n", "analysis.n00", "analysis.n01", "analysis.n10", "analysis.n11", "analysis.p",
                "analysis.r", "analysis.d", "analysis.p_star", "analysis.net", "analysis.net_ci_low",
                "analysis.net_ci_high", "analysis.mcnemar_p", "analysis.mcnemar_midp", "analysis.prob_net_positive",
                "analysis.tasks_needed", "analysis.more_tasks_needed"}  # fmt: skip
    assert required <= set(page.numbers)
    for key, texts in page.numbers.items():
        value = _resolve(page.embedded, key)
        for text in texts:
            assert _shown(value, text), f"{key}: page shows {text!r}, analyze says {value!r}"

    visible = " ".join("".join(page.text).split())
    headline = {"helps": "Deploy the intervention", "harms": "Do not deploy the intervention"}
    assert headline.get(expected["verdict"], "Do not deploy yet") in visible
    assert f"[{expected['net_ci_low']:+.3f}, {expected['net_ci_high']:+.3f}]" in visible
    assert f"{expected['mcnemar_p']:.4f}" in visible and f"{expected['prob_net_positive']:.3f}" in visible
    assert f"{expected['n01']} recoveries" in visible and f"{expected['n10']} disruptions" in visible
    if expected["more_tasks_needed"] is not None and expected["verdict"] == "inconclusive" and expected["net"] > 0:
        assert f"run {expected['more_tasks_needed']} more tasks ({expected['tasks_needed']} in all)" in visible


def _pairs_of(path: Path) -> list[tuple[bool, bool]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["control"], r["treatment"]) for r in rows]


def test_level_and_seed_reach_the_page(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(PILOT_FILE), "--html", str(out), "--level", "0.75", "--seed", "3"])
    assert result.exit_code == 0, result.output
    embedded = _Page(out.read_text()).embedded
    assert embedded is not None
    expected = _analyze_json_args([str(PILOT_FILE), "--level", "0.75", "--seed", "3"])
    assert embedded["analysis"] == expected and expected["verdict"] == "helps"


def _analyze_json_args(args: list[str]) -> dict[str, Any]:
    result = runner.invoke(app, ["analyze", *args, "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ((40, 30, 2, 28), Recommendation.INTERVENE),  # helps
        ((40, 2, 30, 28), Recommendation.PREFER_SELECTION),  # harms, and d > r
        ((118, 16, 9, 7), Recommendation.RUN_MORE_TASKS),  # the paper's pilot: positive but unproven
        ((50, 3, 2, 45), Recommendation.RUN_MORE_TASKS),
        ((50, 2, 3, 45), Recommendation.PREFER_SELECTION),  # inconclusive, negative net, d > r
        ((50, 5, 5, 400), Recommendation.DO_NOT_INTERVENE),  # inconclusive, zero net, r > d
        ((10, 0, 0, 10), Recommendation.DO_NOT_INTERVENE),  # no discordant pairs: nothing to chase
    ],
)
def test_recommendation(cells: tuple[int, int, int, int], expected: Recommendation) -> None:
    assert recommend(analyze(PairedCounts(*cells))) is expected


def _point(control: bool, treatment: bool, step: int | None, p_fail: float | None = None) -> PairPoint:
    return PairPoint(control, treatment, step is not None, step, p_fail)


def test_breakdowns_and_min_step() -> None:
    points = (
        _point(True, False, 0, 0.65),  # early flags disrupt
        _point(True, False, 0, 0.61),
        _point(False, True, 0, 0.95),
        _point(False, True, 2, 0.91),  # later flags recover
        _point(False, True, 3, 0.99),
        _point(True, True, 3, 0.70),
        _point(True, True, None),
        _point(False, False, None),
    )
    numbers = compute(ReportData("t", None, points))
    assert [(g.label, g.counts.as_tuple()) for g in numbers.by_step] == [
        ("step 0", (0, 1, 2, 0)),
        ("step 2", (0, 1, 0, 0)),
        ("step 3", (0, 1, 0, 1)),
    ]
    assert [(g.label, g.counts.n) for g in numbers.by_band] == [("[0.6, 0.7)", 2), ("[0.7, 0.8)", 1), ("[0.9, 1.0]", 3)]
    assert numbers.by_band[0].counts.d.value == 1.0 and numbers.by_band[2].counts.r.value == 1.0
    best = numbers.min_step
    assert best is not None
    assert (best.value, best.earliest) == (2, 0)
    assert best.net_kept == pytest.approx(2 / 8) and best.net_all == pytest.approx(1 / 8) == numbers.analysis.net.value


def test_min_step_keeps_the_earliest_step_on_ties() -> None:
    points = (_point(False, True, 1), _point(True, True, 4), _point(False, True, 4))
    best = compute(ReportData("t", None, points)).min_step
    assert best is not None and (best.value, best.earliest) == (1, 1)
    assert compute(_file_data([(True, False), (False, True)])).min_step is None  # a pairs file has no steps


def test_monitor_band_is_the_guards_monitor() -> None:
    rows = [(False, True), (True, True), (True, False), (False, True), (False, False)] * 9
    numbers = compute(_file_data(rows))
    state = MonitorState.start(0.05)
    for t, (control, treatment) in enumerate(rows):
        state = state.update_pair(control, treatment)
        interval = state.net_interval()
        assert numbers.monitor.low[t] == pytest.approx(interval.low, abs=1e-12)
        assert numbers.monitor.high[t] == pytest.approx(interval.high, abs=1e-12)
    assert numbers.monitor.net[-1] == pytest.approx(numbers.analysis.net.value)
    assert numbers.monitor.benefit_proven_at == state.benefit_proven_at
    assert numbers.monitor.harm_proven_at == state.harm_proven_at


def test_roc_area_is_the_critics_auroc() -> None:
    rng = np.random.default_rng(3)
    failed = rng.random(300) < 0.4
    scores = np.clip(np.round(0.5 + 0.25 * failed + rng.normal(0, 0.2, 300), 1), 0, 1)  # rounding makes ties
    extras = StoreExtras(None, None, (), 0, 0, (), tuple(scores.tolist()), tuple(failed.tolist()))
    numbers = compute(ReportData("t", "k", (_point(True, True, None),), extras))
    assert numbers.roc is not None and numbers.quality is not None
    fpr, tpr = np.array(numbers.roc.false_positive_rate), np.array(numbers.roc.true_positive_rate)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(critic_quality(scores, failed).auroc) == pytest.approx(numbers.quality.auroc)


def test_critic_quality_says_why_it_is_missing() -> None:
    extras = StoreExtras(None, None, (), 0, 0, (), (0.9, 0.8), (True, True))  # only failed runs
    numbers = compute(ReportData("t", "k", (_point(True, True, None),), extras))
    assert numbers.quality is None and numbers.roc is None
    assert numbers.quality_note is not None and "one failed and one successful" in numbers.quality_note
    html = build_report(ReportData("t", "k", (_point(True, True, None),), extras)).html
    assert numbers.quality_note in html.replace("&#x27;", "'")
    assert re.search(r"No lifecycle transitions recorded", html) and "No A/A pairs recorded" in html


def test_the_page_marks_prior_only_intervals_and_an_inconclusive_budget() -> None:
    rows = [(False, False)] * 10  # no control successes: d, p_star are undefined and their intervals the prior's
    extras = StoreExtras(GuardState.PILOT, 0.05, (), 0, 0, (), (), (), inconclusive_at=10)
    page = _Page(build_report(ReportData("t", "k", tuple(PairPoint(c, t) for c, t in rows), extras)).html)
    visible = " ".join("".join(page.text).split())
    assert visible.count("prior only") == 2  # d and p_star (p and net are defined)
    assert "Its pilot ended inconclusive: the budget ran out after 10 pairs without a proof either way" in visible
    assert page.embedded is not None and page.embedded["analysis"]["credible_prior_only"] == [
        "d",
        "p_minus_p_star",
        "p_star",
    ]


def test_the_band_leaves_zero_where_the_monitor_proves_benefit() -> None:
    rows = [(False, True), (True, True), (False, False)] * 40  # recoveries only: benefit is proven early
    track = compute(_file_data(rows)).monitor
    assert track.benefit_proven_at is not None and track.level == 0.95
    t = track.benefit_proven_at
    assert track.low[t - 1] > 0 >= track.low[t - 2]
