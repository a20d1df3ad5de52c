"""`critic-guard traces FILE`: the terminal view of a trace file, and its errors."""

from __future__ import annotations

from pathlib import Path

from test_telemetry_file import write_pilot
from typer.testing import CliRunner

from critic_guard.cli import app

runner = CliRunner()


def test_traces_shows_the_runs_and_the_shadow_link(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    write_pilot(path)
    result = runner.invoke(app, ["traces", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "production run run-1" in result.output
    assert "forked from production run run-1 step 2" in result.output
    assert "intervention ROLLBACK" in result.output


def test_traces_on_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["traces", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 2
    assert "cannot read trace file" in result.output
    assert "Traceback" not in result.output
