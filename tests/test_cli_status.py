"""``critic-guard status`` and the human overrides ``enable|disable KEY --reason``: recorded in the store, traced to
a trace file, and refused with one line (exit 2) when the reason is missing, the key unknown or the lifecycle says
no."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import one_line_error
from rich.console import Console
from test_report_data import build_pilot_store
from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.critics import ConstantCritic
from critic_guard.guard import CriticGuard
from critic_guard.lifecycle import GuardState
from critic_guard.report.status import render_status
from critic_guard.store import SQLiteStore
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.otlp_json import read_trace_file

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("status") / "pilot.db"
    return path, build_pilot_store(path)


@pytest.fixture
def pilot(built: tuple[Path, str], tmp_path: Path) -> tuple[str, str, Path]:
    """A private copy of the seeded store (AUTO guard, enabled by the monitor): (URL, guard key, path)."""
    source, key = built
    path = tmp_path / "pilot.db"
    shutil.copyfile(source, path)
    return f"sqlite:///{path}", key, path


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_status_json_is_the_stores_record(pilot: tuple[str, str, Path]) -> None:
    url, key, path = pilot
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    with SQLiteStore(path) as store:
        record = store.get_guard(key)
    assert record is not None and record.last_transition is not None
    assert (row["guard_key"], row["state"]) == (key, "enabled")
    evidence = row["evidence"]
    assert evidence["pairs"] == record.counts.n and evidence["counts"] == list(record.counts.as_tuple())
    assert evidence["benefit_wealth"] >= evidence["threshold"] == 40.0  # 1/(alpha/2): alpha bounds both sides
    assert (evidence["outcome"], evidence["net_low"] > 0) == ("benefit proven", True)
    assert row["last_transition"]["to_state"] == "enabled" and row["last_transition"]["actor"] == "monitor"
    assert row["last_transition"]["reason"] == record.last_transition.reason
    assert (row["aa_pairs"], row["incomplete"]) == (record.aa_pairs, record.incomplete)


def test_status_table(pilot: tuple[str, str, Path]) -> None:
    url, key, _ = pilot
    out = _ok(["status", "--store", url])
    assert key in out and "enabled" in out and "pilot -> enabled by monitor" in out and "(proof at 40)" in out
    assert " ".join(out.split()).count("benefit proven at pair") == 1  # (the table may wrap the cell)


def test_status_of_an_empty_store(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "empty.db").close()
    assert _ok(["status", "--store", f"sqlite:///{tmp_path / 'empty.db'}"]).strip() == "no guard keys in this store yet"
    assert json.loads(_ok(["status", "--store", f"sqlite:///{tmp_path / 'empty.db'}", "--json"])) == []


def test_disable_then_enable_is_recorded_and_traced(pilot: tuple[str, str, Path], tmp_path: Path) -> None:
    url, key, path = pilot
    traces = tmp_path / "traces.jsonl"
    out = _ok(["disable", key, "--reason", "holiday freeze", "--store", url, "--trace-file", str(traces)])
    assert out.strip() == f"{key}: enabled -> disabled (holiday freeze)"
    _ok(["enable", key, "--reason", "freeze over", "--store", url, "--trace-file", str(traces)])
    with SQLiteStore(path) as store:
        moves = store.transitions(key)
        record = store.get_guard(key)
    assert [(t.from_state, t.to_state, t.actor, t.reason) for t in moves[-2:]] == [
        (GuardState.ENABLED, GuardState.DISABLED, "human", "holiday freeze"),
        (GuardState.DISABLED, GuardState.ENABLED, "human", "freeze over"),
    ]
    assert record is not None and record.state is GuardState.ENABLED
    events = [e for span in read_trace_file(traces).spans for e in span.events if e.name == A.EVENT_TRANSITION]
    moved = [
        tuple(e.attributes[name] for name in (A.LIFECYCLE_FROM, A.LIFECYCLE_TO, A.LIFECYCLE_REASON)) for e in events
    ]
    assert moved == [("enabled", "disabled", "holiday freeze"), ("disabled", "enabled", "freeze over")]
    assert all(e.attributes[A.GUARD_KEY] == key for e in events)
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    assert row["last_transition"]["reason"] == "freeze over" and row["last_transition"]["actor"] == "human"


def test_no_trace_file_means_no_trace(
    pilot: tuple[str, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key, _ = pilot
    monkeypatch.chdir(tmp_path)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    _ok(["disable", key, "--reason", "quiet", "--store", url])
    assert list(tmp_path.iterdir()) == [tmp_path / "pilot.db"]  # nothing written beside the store


def test_override_errors_are_one_line(pilot: tuple[str, str, Path], tmp_path: Path) -> None:
    url, key, path = pilot
    assert "--reason TEXT is required" in one_line_error(["disable", key, "--store", url])
    assert "--reason TEXT is required" in one_line_error(["disable", key, "--reason", "  ", "--store", url])
    assert f"unknown guard key 'nope'; the store has: {key}" in one_line_error(
        ["enable", "nope", "--reason", "x", "--store", url]
    )
    assert "is already enabled" in one_line_error(["enable", key, "--reason", "again", "--store", url])
    assert "no SQLite store at" in one_line_error(
        ["enable", key, "--reason", "x", "--store", f"sqlite:///{tmp_path / 'no.db'}"]
    )
    with SQLiteStore(path) as store:
        assert all(t.actor == "monitor" for t in store.transitions(key))  # nothing was recorded


def test_reset_monitor_starts_fresh_evidence(pilot: tuple[str, str, Path]) -> None:
    url, key, path = pilot
    _ok(["enable", key, "--reason", "new critic prompt", "--reset-monitor", "--store", url])
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    assert row["state"] == "enabled" and row["evidence"]["t"] == 0  # the monitor restarted, the counts stay
    with SQLiteStore(path) as store:
        record = store.get_guard(key)
    assert record is not None and row["evidence"]["pairs"] == record.counts.n > 0


def test_a_failed_trace_is_a_warning_after_the_recorded_override(
    pilot: tuple[str, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key, path = pilot
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # refused by critic-guard's OTLP/HTTP exporter
    result = runner.invoke(app, ["disable", key, "--reason", "outage", "--store", url])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{key}: enabled -> disabled (outage)"
    assert result.stderr.startswith("critic-guard: warning: the transition is recorded but was not traced: OTLP")
    with SQLiteStore(path) as store:
        assert store.transitions(key)[-1].reason == "outage"


def test_status_does_not_load_matplotlib(pilot: tuple[str, str, Path]) -> None:
    url, _, _ = pilot
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from critic_guard.cli import app\n"
        f"assert CliRunner().invoke(app, ['status', '--store', {url!r}, '--json']).exit_code == 0\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_status_says_inconclusive_when_a_pilot_budget_ran_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    rng = random.Random(5)
    with CriticGuard(ConstantCritic(0.9), mode="auto", store=url, max_pilot_pairs=8) as guard:
        for i in range(12):  # one-run pairs of tasks never flagged: concordant, no proof either way
            run = guard.start_run(run_id=f"t{i}")
            if guard.should_fork(run):
                guard.open_pair(run, control_run_id=run, treatment_run_id=run, flagged=False)
            guard.end_run(run, success=rng.random() < 0.5)
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    assert row["state"] == "pilot"  # a spent budget is not a harm verdict: by default the state stays pilot
    assert (row["evidence"]["outcome"], row["evidence"]["inconclusive_at"], row["evidence"]["pairs"]) == (
        "inconclusive",
        8,
        8,
    )
    assert row["last_transition"]["reason"].startswith("budget spent, inconclusive: 8 pilot pairs")
    console = Console(width=400, record=True)
    console.print(render_status([row]))  # the table `status` prints, wide enough not to wrap
    assert "inconclusive: pilot budget spent at pair 8, no proof" in console.export_text()
