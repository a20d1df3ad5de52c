"""What the command-line tests share: the one-line error check and a store whose guard key must be chosen.

Why one place: every bad input to ``critic-guard`` must be one line on stderr with a documented exit code, never a
traceback (docs/report.md, "Command line: output and exit codes"); the status, report and bad-input tests check it
the same way, and the report's data and command tests both need a store that holds two guard keys.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.cli_errors import INTERNAL_ERROR, USAGE_ERROR
from critic_guard.guard import CriticGuard
from critic_guard.store import SQLiteStore

runner = CliRunner()


def one_line_error(args: list[str], code: int = USAGE_ERROR) -> str:
    """Run ``critic-guard ARGS`` in process; assert it failed with ``code`` and one error line, no traceback; return
    that line."""
    result = runner.invoke(app, args)
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    prefix = "critic-guard: internal error: " if code == INTERNAL_ERROR else "critic-guard: error: "
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def store_with_two_guard_keys(path: Path) -> Path:
    """A SQLite store at ``path`` with two guards (agents ``a`` and ``b``), one open pair each; returns ``path``."""
    with SQLiteStore(path) as store:
        for name in ("a", "b"):
            with CriticGuard(lambda ctx: 0.9, agent_name=name, store=store) as guard:
                run = guard.start_run(run_id=f"{name}1")
                guard.open_pair(run, control_run_id=run, treatment_run_id=run, flagged=False)
    return path
