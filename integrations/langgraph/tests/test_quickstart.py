"""examples/quickstart.py runs offline and shows the rollback it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart.py"

EXPECTED = """\
The sum is 10.
step 0 attempt 0: p_fail=0.10 -> none
step 1 attempt 0: p_fail=0.10 -> none
step 2 attempt 0: p_fail=0.90 -> rollback
step 2 attempt 1: p_fail=0.10 -> none
step 3 attempt 0: p_fail=0.10 -> none
step 4 attempt 0: p_fail=0.10 -> none
"""


def test_quickstart_prints_the_right_sum_and_the_rollback(tmp_path: Path) -> None:
    for _ in range(2):  # a second run in the same directory reuses the store and still reports its own run
        done = subprocess.run(
            [sys.executable, str(QUICKSTART)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == EXPECTED
    assert (tmp_path / "critic_guard.db").exists()  # the default store: SQLite in the working directory
