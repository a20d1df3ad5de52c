"""The CLI: analyze from cells and files, JSON output, the demo, the power calculator, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic_guard.cli import app

runner = CliRunner()
REQUIRED_KEYS = {
    "n", "n00", "n01", "n10", "n11", "p", "r", "d", "p_star", "net", "net_ci_low", "net_ci_high",
    "mcnemar_p", "mcnemar_midp", "prob_net_positive", "verdict", "prefer_selection",
}  # fmt: skip


def _json(args: list[str]) -> dict[str, object]:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_analyze_cells_human_report() -> None:
    result = runner.invoke(app, ["analyze", "--cells", "118", "16", "9", "7"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Verdict: INCONCLUSIVE" in out
    assert "[-0.020, +0.116]" in out  # the Tango interval
    assert "0.2295" in out  # exact McNemar
    assert "632 (482 more)" in out  # exact power of the verdict's own rule
    assert "exact power of the verdict's rule, enumerated" in out
    assert "verdict decided by" in out and "Tango score interval and exact McNemar test" in out
    assert "says intervene" in out and "best-of-N" in out


def test_analyze_says_when_the_exact_test_overrules_the_interval() -> None:
    result = runner.invoke(app, ["analyze", "--cells", "4", "0", "4", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "Verdict: INCONCLUSIVE" in out and "[-0.785, -0.013], excludes 0, but the exact McNemar p = 0.1250" in out
    assert "verdict decided by │ exact McNemar test" in out
    data = _json(["analyze", "--cells", "0", "5", "0", "0", "--json"])
    assert (data["verdict"], data["decided_by"], data["mcnemar_p"]) == ("inconclusive", "exact McNemar test", 0.0625)


def test_analyze_flags_prior_only_intervals() -> None:
    result = runner.invoke(app, ["analyze", "--cells", "10", "0", "0", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "[0.025, 0.975] prior only" in rows["d"] and "prior only" in rows["p_star"]
    assert "prior only" not in rows["p"] and "prior only" not in rows["net"]


def test_analyze_cells_json() -> None:
    data = _json(["analyze", "--cells", "118", "16", "9", "7", "--json"])
    assert set(data) >= REQUIRED_KEYS
    assert data["verdict"] == "inconclusive" and data["prefer_selection"] is True
    assert (data["n"], data["n01"], data["n10"]) == (150, 16, 9)
    assert round(float(data["mcnemar_p"]), 3) == 0.230  # type: ignore[arg-type]


def test_level_and_seed_are_passed_through() -> None:
    base = _json(["analyze", "--cells", "118", "16", "9", "7", "--json"])
    other = _json(["analyze", "--cells", "118", "16", "9", "7", "--json", "--level", "0.75", "--seed", "5"])
    assert other["level"] == 0.75 and other["seed"] == 5 and other["verdict"] == "helps"
    assert other["credible_intervals"] != base["credible_intervals"]


def test_analyze_jsonl_file_with_both_key_spellings(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"control": False, "treatment": True, "task": "a"},
        {"control_success": 1, "treatment_success": 0},
        {"control": True, "treatment": True},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = _json(["analyze", str(path), "--json"])
    assert (data["n00"], data["n01"], data["n10"], data["n11"]) == (0, 1, 1, 1)


def test_analyze_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("task,control,treatment\nt1,0,1\nt2,true,FALSE\nt3,0,0\nt4,1,1\nt5,0,1\n")
    data = _json(["analyze", str(path), "--json"])
    assert (data["n00"], data["n01"], data["n10"], data["n11"]) == (1, 2, 1, 1)


def test_demo_paper_reproduces_the_alfworld_example() -> None:
    result = runner.invoke(app, ["demo", "--paper"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "ALFWorld" in result.stdout and "Verdict: INCONCLUSIVE" in result.stdout
    assert "n00 = 118" in result.stdout and "n01 = 16" in result.stdout
    data = _json(["demo", "--paper", "--json"])
    assert (data["n00"], data["n01"], data["n10"], data["n11"]) == (118, 16, 9, 7)


def test_power_command_both_ways() -> None:
    result = runner.invoke(app, ["power", "--effect", "0.05", "--discordant", "0.2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # Connor's formula for the asymptotic test alone says 626 tasks; the verdict (interval and exact test) needs 658
    # for 80% (verdict_power(658, ...) >= 0.8 > verdict_power(657, ...), tested in test_stats_power.py).
    assert result.stdout.startswith("658 tasks detect net = +0.05")
    assert "(exact power of the verdict's rule, enumerated)" in result.stdout
    result = runner.invoke(app, ["power", "--tasks", "150", "--discordant", "0.1667"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "detect |net| >= 0.096" in result.stdout  # Connor: 0.093


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "--cells", "118", "-16", "9", "7"], "n01 must be a non-negative integer, got -16"),
        (["analyze", "--cells", "118", "x", "9", "7"], "--cells: N01 must be a non-negative integer, got 'x'"),
        (["analyze", "--cells", "0", "0", "0", "0"], "no pairs to analyse"),
        (["analyze"], "give either a pairs FILE or --cells"),
        (["analyze", "--cells", "1", "2", "3", "4", "--level", "1.5"], "level must be a number strictly between"),
        (["analyze", "does-not-exist.jsonl"], "does-not-exist.jsonl: no such file"),
        (["power", "--discordant", "0.1", "--effect", "0.2"], "no larger in size than the discordant rate"),
        (["power", "--discordant", "0.1"], "give either --effect"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("critic-guard: error: ")
    assert message in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"control": true, "treatment": false}\n{"control": true\n', "bad.jsonl:2: not valid JSON"),
        ("bad.jsonl", '{"control": true, "treatment": 2}\n', "bad.jsonl:1: an outcome must be true/false or 1/0"),
        ("bad.jsonl", '{"control": true}\n', "bad.jsonl:1: expected exactly one of 'treatment'"),
        ("bad.jsonl", "[true, false]\n", "bad.jsonl:1: expected a JSON object per line"),
        ("bad.jsonl", "\n\n", "bad.jsonl: no pairs found"),
        ("bad.csv", "control,treatment\n1,maybe\n", "bad.csv:2: an outcome must be true/false or 1/0"),
        ("bad.csv", "control,treatment\n1,0,1\n", "bad.csv:2: more fields than the header has"),
        ("bad.csv", "ctrl,treatment\n1,0\n", "bad.csv:2: expected exactly one of 'control'"),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_a_directory_is_not_a_pairs_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_readme_shows_the_actual_output_of_the_worked_example() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    command = "$ critic-guard analyze --cells 118 16 9 7\n"
    assert command in readme, "the README's statistics section lost its worked example"
    shown = readme.split(command, 1)[1].split("\n```", 1)[0]
    result = runner.invoke(app, ["analyze", "--cells", "118", "16", "9", "7"], env={"COLUMNS": "110"})
    actual = "\n".join(line.rstrip() for line in result.stdout.splitlines())
    assert shown == actual


def test_parser_level_mistakes_exit_2_without_traceback() -> None:
    # Option syntax errors are reported by typer's parser in its own (boxed) format, still with exit code 2.
    result = runner.invoke(app, ["analyze", "--cells", "1", "2", "3"])
    assert result.exit_code == 2
    assert "requires 4 arguments" in result.output and "Traceback" not in result.output


def test_csv_exported_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes("\ufeffcontrol,treatment\n0,1\n1,1\n".encode())
    data = _json(["analyze", str(path), "--json"])
    assert (data["n01"], data["n11"]) == (1, 1)
