"""``status`` and the report show pairs that are not counted: excluded ones and open ones (docs/faults.md).

A pair left open (a lost outcome) or excluded must never disappear from what an operator reads: otherwise a pilot
hit by store faults would look cleaner than it was.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from critic_guard.guard import CriticGuard
from critic_guard.report.data import from_store
from critic_guard.report.pilot_sections import incomplete
from critic_guard.report.status import render_status, status_rows
from critic_guard.types import Arm


def shown(rows: list[dict[str, object]]) -> str:
    console = Console(width=200, record=True)
    console.print(render_status(rows))  # type: ignore[arg-type]
    return console.export_text()


def test_open_and_excluded_pairs_are_shown_in_status_and_the_report(tmp_path: Path) -> None:
    with CriticGuard(lambda ctx: 0.1, mode="pilot", store=f"sqlite:///{tmp_path / 'g.db'}") as guard:
        assert guard.store is not None
        for i in range(3):
            prod = guard.start_run(run_id=f"p{i}", task={"task_id": f"t{i}"})
            branch = guard.start_run(task={"task_id": f"t{i}"}, arm=Arm.TREATMENT, parent_run_id=prod, fork_step=2)
            guard.open_pair(prod, control_run_id=prod, treatment_run_id=branch, flagged=True, fork_step=2)
        guard.mark_incomplete("p0", "branch failed: RuntimeError: boom")
        guard.end_run("p1", success=True)  # its branch's outcome never arrives: open

        [row] = status_rows(guard.store)
        assert (row["open"], row["incomplete"]) == (2, 1)
        page = shown([row])
        assert "1 pairs: a shadow branch or a run could not finish" in page
        assert "2 pairs still waiting for an outcome" in page
        extras = from_store(guard.store, guard.guard_key, source="test").store
        assert extras is not None
        assert (extras.open_pairs, extras.incomplete_reasons) == (2, ("branch failed: RuntimeError: boom",))
        html = incomplete(extras)
        assert "2 pairs are still open" in html and "RuntimeError: boom" in html
