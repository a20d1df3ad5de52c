"""``critic-guard pilot SUITE``: options, output, resume by rerunning, and one-line errors for bad input.

The suite is ``test_pilot_core:cli_suite`` (a framework-free adapter); the LangGraph demo suite and a real
``kill -9`` are tested in integrations/langgraph/tests/test_pilot_crash.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic_guard.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default store and trace file land here


def test_json_output_and_a_rerun_resumes(tmp_path: Path) -> None:
    first = runner.invoke(app, ["pilot", "test_pilot_core:cli_suite", "--json", "--concurrency", "2"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["pairs"] == {"n00": 1, "n01": 2, "n10": 1, "n11": 2}
    assert (data["tasks"], data["done"], data["ran"], data["skipped"], data["failed"]) == (6, 6, 6, 0, 0)
    assert data["report"]["verdict"] == "inconclusive" and data["lifecycle"] == "pilot"
    assert (tmp_path / "critic_guard.db").is_file() and (tmp_path / "critic_guard_traces.jsonl").is_file()

    again = json.loads(runner.invoke(app, ["pilot", "test_pilot_core:cli_suite", "--json"]).stdout)
    assert (again["ran"], again["skipped"], again["pairs"]) == (0, 6, data["pairs"])


def test_rich_output_store_trace_file_tasks_and_auto_mode(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "pilot",
            "test_pilot_core:cli_suite",
            "--store",
            f"sqlite:///{tmp_path / 'other.db'}",
            "--trace-file",
            str(tmp_path / "t.jsonl"),
            "--tasks",
            "3",
            "--mode",
            "auto",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "tasks: 3 of 3 done (0 before this run, 3 run now), 0 failed" in result.stdout
    assert "Verdict: INCONCLUSIVE" in result.stdout and "guard lifecycle: pilot" in result.stdout
    assert (tmp_path / "other.db").is_file() and (tmp_path / "t.jsonl").is_file()
    assert not (tmp_path / "critic_guard.db").exists()


def test_a_failed_task_is_reported_with_exit_code_1() -> None:
    result = runner.invoke(app, ["pilot", "test_pilot_core:cli_suite", "--seed", "1", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["failed"] == 1 and data["failed_tasks"] == {"t3": "RuntimeError"}  # the message may quote tool args
    assert data["lost_writes"] == 0
    assert result.stderr.strip().splitlines() == [
        "critic-guard: error: pilot incomplete: failed tasks: t3; lost writes: 0"
    ]  # one line naming the task; a rerun runs it again


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nocolon"], "suite must be given as 'module:function', got 'nocolon'"),
        (["no_such_suite_module:x"], "cannot import suite module 'no_such_suite_module'"),
        (["test_pilot_core:nothing"], "module 'test_pilot_core' has no callable 'nothing'"),
        (["test_pilot_core:cli_suite", "--mode", "on"], "'on' is not one of 'pilot', 'auto'"),
        (["test_pilot_core:cli_suite", "--concurrency", "0"], "--concurrency must be >= 1, got 0"),
        (["test_pilot_core:cli_suite", "--tasks", "0"], "--tasks must be >= 1, got 0"),
        (["test_pilot_core:cli_suite", "--store", "mysql://x"], "unsupported store URL 'mysql://x'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["pilot", *args])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("critic-guard: error: ") and message in line


def test_make_demo_runs_critic_guard_demo() -> None:
    """`make demo` and `critic-guard demo` are one thing (README's first command)."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    recipe = makefile.split("\ndemo: install\n", 1)[1].split("\n", 1)[0]
    assert recipe == "\t$(BIN)/critic-guard demo"


def test_demo_without_the_integration_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "critic_guard_langgraph" else find_spec(name, *a)
    )
    result = runner.invoke(app, ["demo", "--tasks", "2"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "critic-guard: error: the live demo runs a LangGraph agent: pip install critic-guard-langgraph (or analyse the "
        "bundled paper pilot with `critic-guard demo --paper`)"
    ]
    assert not Path("critic_guard.db").exists()  # nothing was created
