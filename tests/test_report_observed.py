"""The observe report reads a guard key's scores in one set-based read (issue 16: no read per run), and its numbers
are those the per-run reads give: by step, by score bin, and AUROC against each run's outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_suite import KEY, make_run, make_step

from critic_guard.calibration import critic_quality
from critic_guard.report.observed import gather_observed
from critic_guard.store import SQLiteStore, Store


def _seed(store: Store) -> None:
    """Six production runs (two without an outcome, one with a critic error), a shadow branch and another key."""
    for i in range(6):
        run = f"r{i}"
        store.add_run(make_run(run, started_at=100.0 - i))
        for step in range(4):
            p_fail = None if (i, step) == (2, 1) else round(0.07 * (i + 1) + 0.11 * step, 3)
            error = {"p_fail": None, "critic_error": "TimeoutError"} if p_fail is None else {"p_fail": p_fail}
            store.add_step(make_step(run, step, flagged=p_fail is not None and p_fail >= 0.5, **error))
        if i < 4:
            store.record_outcome(run, i % 2 == 1, recorded_at=200.0)
    store.add_run(make_run("r0:shadow", started_at=101.0, parent_run_id="r0", fork_step=1))
    store.add_run(make_run("elsewhere", guard_key="b/c/2"))
    for run in ("r0:shadow", "elsewhere"):
        store.add_step(make_step(run, 1, p_fail=0.99, flagged=True))
        store.record_outcome(run, False, recorded_at=200.0)


def _per_run(store: Store) -> list[tuple[int, float, bool, bool | None]]:
    """(step, p_fail, flagged, failed) of every verdict, one read per production run (what the report must equal)."""
    rows = []
    for run in store.runs(KEY):
        outcome = None if run.parent_run_id is not None else store.get_outcome(run.run_id)
        for s in [] if run.parent_run_id is not None else store.steps_of(run.run_id):
            if s.p_fail is not None:
                rows.append((s.step, s.p_fail, s.flagged, None if outcome is None else not outcome.success))
    return rows


def test_observed_numbers_come_from_one_read_and_equal_the_per_run_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SQLiteStore(tmp_path / "observe.db") as store:
        _seed(store)
        expected = _per_run(store)

        def one_read_per_run(*args: object) -> None:
            raise AssertionError("the observe report read one run at a time")

        monkeypatch.setattr(store, "steps_of", one_read_per_run)
        monkeypatch.setattr(store, "get_outcome", one_read_per_run)
        numbers = gather_observed(store, KEY, source="observe.db")
    assert len(expected) == 23  # 24 reviews of the key's production runs, one a critic error
    for row in numbers.by_step:
        at = [(p, f) for s, p, f, _ in expected if s == row.step]
        assert (row.judged, row.flagged) == (len(at), sum(f for _, f in at))
        assert row.mean_p_fail == pytest.approx(np.mean([p for p, _ in at]))
    assert sum(b.count for b in numbers.bins) == len(expected)
    assert sum(b.in_failed_runs for b in numbers.bins) == sum(y is True for *_, y in expected)
    assert sum(b.in_successful_runs for b in numbers.bins) == sum(y is False for *_, y in expected)
    labeled = [(p, y) for _, p, _, y in expected if y is not None]
    direct = critic_quality(np.array([p for p, _ in labeled]), np.array([y for _, y in labeled]))
    assert numbers.quality is not None and numbers.quality.auroc == pytest.approx(direct.auroc)
    assert numbers.quality.n == len(labeled) == 15
