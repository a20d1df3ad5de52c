"""examples/shadow_pilot.py runs offline, ends with the decision, and a second run resumes instead of rerunning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "shadow_pilot.py"


def run(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_shadow_pilot_example_decides_and_resumes(tmp_path: Path) -> None:
    first = run(tmp_path)
    assert "tasks: 60 of 60 done (0 before this run, 60 run now), 0 failed" in first
    assert "n01 = 17  (recoveries)" in first and "n10 = 5  (disruptions)" in first
    assert "Verdict: HELPS" in first
    second = run(tmp_path)
    assert "tasks: 60 of 60 done (60 before this run, 0 run now), 0 failed" in second
    assert "n01 = 17  (recoveries)" in second
    assert (tmp_path / "critic_guard.db").is_file()
