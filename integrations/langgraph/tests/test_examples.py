"""The production (auto mode) and trace-inspection examples run offline and show what their docstrings promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def run(name: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_auto_mode_disables_a_harmful_intervention_and_remembers_it(tmp_path: Path) -> None:
    first = run("production_auto.py", tmp_path)
    assert "state at start: pilot (0 pairs so far)" in first
    assert "transition: pilot -> disabled after 17 pairs: harm proven" in first  # alpha/2 per side: 1/0.025 = 40
    assert "state at end: disabled; intervening now: False" in first
    assert "served: {'control': 150, 'treatment': 0}" in first  # users never saw the harmful intervention
    second = run("production_auto.py", tmp_path)  # the store keeps the lifecycle: no new pilot, no new pairs
    assert "state at start: disabled (17 pairs so far)" in second
    assert "pairs: 17 (recoveries 0, disruptions 11)" in second


@pytest.mark.slow
def test_trace_inspection_finds_every_fork_in_the_trace_file(tmp_path: Path) -> None:
    out = run("trace_inspection.py", tmp_path)
    assert out.startswith("18 runs in critic_guard_traces.jsonl")  # 12 production runs, 6 shadow branches
    forks = [line for line in out.splitlines() if "flagged" in line]
    assert len(forks) == 6
    assert "sum-2: step 1 flagged (p_fail 0.90); control failed, treatment succeeded -> cell n01" in out
    assert "sum-6: step 2 flagged (p_fail 0.70); control succeeded, treatment failed -> cell n10" in out
    assert (tmp_path / "critic_guard_traces.jsonl").stat().st_size > 0
