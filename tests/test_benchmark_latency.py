"""benchmarks/latency.py at smoke size: every mode's row with numeric figures, every step judged, the burst read back.

Not timed: the figures are whatever this machine gives; the tests check that the script measures what it says.
"""

from __future__ import annotations

import pytest

from benchmarks import latency

MODES = ["unguarded", "off", "observe", "pilot", "on", "auto"]
GUARDED = ["observe", "pilot", "on", "auto"]
EXPECTED_ROWS = [
    *[("invoke", "-", mode) for mode in MODES[:2]],
    *[("invoke", "sync", mode) for mode in GUARDED],
    *[("ainvoke", "-", mode) for mode in MODES[:2]],
    *[("ainvoke", "sync", mode) for mode in GUARDED],
    *[("ainvoke", "async", mode) for mode in GUARDED],
]


def test_latency_by_mode_prints_every_variant_with_its_ratio_and_judged_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = latency.main(["--reps", "2", "--warmup", "1", "--steps", "1", "--critic-ms", "2", "--burst", "0"])
    out = capsys.readouterr().out
    printed = [line.split() for line in out.splitlines() if line.startswith(("  invoke ", "  ainvoke "))]
    assert [tuple(tokens[:3]) for tokens in printed] == EXPECTED_ROWS
    for tokens in printed:  # ms/run [low, high] then ratio [low, high]
        assert float(tokens[3]) > 0 and float(tokens[6]) > 0, tokens
    assert [(row.api, row.critic, row.mode) for row in report.rows] == EXPECTED_ROWS
    for row in report.rows:
        assert row.ms.low <= row.ms.estimate <= row.ms.high
        if row.mode in ("unguarded", "off"):
            assert row.judged is None
        else:  # 3 repetitions x 2 model steps, each judged once the guard is closed
            assert (row.judged, row.critic_errors, row.expected) == (6, 0, 6), row
    targets = {row.mode: row.target for row in report.rows if row.api == "invoke"}
    assert targets["observe"].startswith("<= 1.5x unguarded: ")
    assert targets["on"].startswith("<= 1.1x (unguarded + critic): ")
    assert "burst" not in out


def test_burst_reads_every_run_and_verdict_back_from_the_store(capsys: pytest.CaptureFixture[str]) -> None:
    report = latency.main(["--reps", "0", "--critic-ms", "2", "--burst", "12", "--burst-modes", "observe", "on"])
    out = capsys.readouterr().out
    assert report.rows == [] and "run latency" not in out
    assert [b.mode for b in report.bursts] == ["observe", "on"]
    for burst in report.bursts:
        assert (burst.runs, burst.failed_runs, burst.runs_recorded, burst.proposed) == (12, 0, 12, 12)
        assert (burst.verdict_rows, burst.error_rows, burst.without_row) == (12, {}, 0)
        assert burst.counters["verdicts"] == 12 and burst.counters["critic_errors"] == 0
        assert burst.wall_s > 0 and burst.run_ms[0] <= burst.run_ms[1]
    rows = [line.split() for line in out.splitlines() if line.startswith(("  observe ", "  on "))]
    assert [tokens[:5] for tokens in rows] == [["observe", "12", "12", "12", "12"], ["on", "12", "12", "12", "12"]]
    assert out.count("target every step judged (or counted and excluded): met") == 2


def test_sizes_must_not_be_negative() -> None:
    with pytest.raises(SystemExit):
        latency.parse_args(["--burst", "-1"])
