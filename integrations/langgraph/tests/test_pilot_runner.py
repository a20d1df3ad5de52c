"""The pilot runner on real create_agent graphs (LangGraphPilot): cells, cost per task, concurrency, resume.

Suites from ``pilot_suites``: the calculator agent with clean / slip / fragile / hopeless tasks, whose cells are
known in advance (n11 / n01 / n10 / n00).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pilot_suites import CELL, MIXED, calc_suite

from critic_guard.lifecycle import GuardRecord
from critic_guard.pilot import PilotResult, PilotSuite, run_pilot
from critic_guard.store.base import PairRecord, PairStatus, RunRecord
from critic_guard_langgraph.pilot import default_input


@dataclass(frozen=True)
class Stored:
    """What the store holds after a pilot (read before the guard closes)."""

    lifecycle: GuardRecord
    pairs: list[PairRecord]
    runs: list[RunRecord]


def pilot(suite: PilotSuite, path: Path, *, mode: str = "pilot", **kwargs: Any) -> tuple[PilotResult, Stored]:
    with suite.guard(mode=mode, store=f"sqlite:///{path}") as guard:
        result = asyncio.run(run_pilot(suite, guard, **kwargs))
        assert guard.store is not None
        return result, Stored(guard.lifecycle(), guard.pairs(), guard.store.runs(guard.guard_key))


def expected_cells(kinds: tuple[str, ...]) -> dict[str, int]:
    cells = dict.fromkeys(("n00", "n01", "n10", "n11"), 0)
    for kind in kinds:
        cells[CELL[kind]] += 1
    return cells


@pytest.mark.parametrize("concurrency", [1, 3])
def test_every_kind_of_task_lands_in_its_cell(tmp_path: Path, concurrency: int) -> None:
    result, stored = pilot(calc_suite(MIXED), tmp_path / "g.db", concurrency=concurrency)
    assert result.to_dict()["pairs"] == expected_cells(MIXED)
    assert (result.tally.done, result.tally.flagged, result.tally.incomplete, result.tally.open) == (8, 5, 0, 0)
    assert result.report is not None and result.report.counts == result.tally.counts
    assert stored.lifecycle.counts == result.tally.counts


def test_unflagged_tasks_cost_one_run(tmp_path: Path) -> None:
    calls: list[int] = []
    result, stored = pilot(calc_suite(("clean",) * 4, calls=calls), tmp_path / "g.db", concurrency=2)
    assert len(calls) == 4 * 5  # four tool steps and the answer, once per task: no second run, no branch
    assert result.tally.n11 == 4 and result.tally.flagged == 0
    assert len(stored.runs) == 4
    assert all(p.single_run and not p.flagged and p.status is PairStatus.COMPLETE for p in stored.pairs)

    calls.clear()
    pilot(calc_suite(("slip",), calls=calls), tmp_path / "slip.db")
    assert len(calls) == 5 + 3  # production, then only the branch's suffix: the retry of step 2, steps 3 and 4


def test_a_finished_pilot_reruns_nothing(tmp_path: Path) -> None:
    calls: list[int] = []
    first, _ = pilot(calc_suite(MIXED, calls=calls), tmp_path / "g.db")
    made = len(calls)
    again, stored = pilot(calc_suite(MIXED, calls=calls), tmp_path / "g.db")
    assert (len(calls), again.ran, again.skipped, again.tally.counts) == (made, 0, 8, first.tally.counts)
    assert stored.lifecycle.counts == first.tally.counts


def test_a_task_without_input_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="has no 'input'; give LangGraphPilot an input= function"):
        default_input({"task_id": "x"})
    suite = calc_suite(("clean",))
    broken = PilotSuite("broken", [{"task_id": "x"}], suite.critic, suite.adapter, policy=suite.policy)
    result, _ = pilot(broken, tmp_path / "g.db")
    assert (result.tally.failed, result.tally.done) == (1, 0)
