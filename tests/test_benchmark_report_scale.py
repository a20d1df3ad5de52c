"""benchmarks/report_scale.py at smoke size: its store holds what the lifecycle would have written, and it measures
both report paths on it.

Not timed: the figures are whatever this machine gives; the tests check that the script builds and measures what
it says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import report_scale
from critic_guard.report.data import from_store
from critic_guard.report.numbers import compute
from critic_guard.stats.monitor import MonitorState
from critic_guard.store import SQLiteStore


def _lifecycle_monitors(x: list[float]) -> list[MonitorState]:
    state, after = MonitorState.start(report_scale.ALPHA), []
    for value in x:
        state = state.update(value)
        after.append(state)
    return after


def test_the_shortcut_gives_the_monitors_own_floats() -> None:
    x = (np.random.default_rng(3).integers(0, 3, 700) / 2.0).tolist()
    rows = report_scale.monitor_rows(np.array(x))
    after = _lifecycle_monitors(x)
    assert rows.band_low.tolist() == [m.band_low for m in after]
    assert rows.band_high.tolist() == [m.band_high for m in after]
    assert rows.harm_log_wealth == [m.harm_log_wealth for m in after]
    assert rows.benefit_log_wealth == [m.benefit_log_wealth for m in after]
    assert rows.final == after[-1]


def test_the_built_store_holds_the_lifecycles_rows_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "small.db"
    report_scale.build_store(path, 400, seed=1)
    with SQLiteStore(path) as store:
        record = store.get_guard(report_scale.KEY)
        data = from_store(store, report_scale.KEY, source="test")
        with store._reading() as ledger:
            stored = ledger.execute(
                "SELECT t, band_low, band_high, harm_log_wealth, benefit_proven_at FROM pair_monitor ORDER BY seq"
            ).fetchall()
    x = [(int(p.control) - int(p.treatment) + 1) / 2.0 for p in data.pairs]
    after = _lifecycle_monitors(x)
    assert [tuple(r) for r in stored] == [
        (m.t, m.band_low, m.band_high, m.harm_log_wealth, m.benefit_proven_at) for m in after
    ]
    assert record is not None and record.monitor == after[-1] and record.counts == data.counts
    assert data.store is not None and len(data.store.scores) == 800 and data.store.track is not None
    assert compute(data).monitor.benefit_proven_at == after[-1].benefit_proven_at


def test_it_measures_both_paths_on_the_same_store(capsys: pytest.CaptureFixture[str]) -> None:
    results = report_scale.main(["--pairs", "300", "--old-pairs", "300"])
    assert [(r["path"], r["pairs"]) for r in results] == [("new", 300), ("old", 300)]
    new, old = results
    assert all(r[k] > 0 for r in results for k in ("data_wall_s", "html_wall_s", "peak_rss_mb", "html_bytes"))
    assert (new["harm_proven_at"], new["benefit_proven_at"]) == (old["harm_proven_at"], old["benefit_proven_at"])
    out = capsys.readouterr().out
    assert "built a store of 300 pairs" in out
    assert any(line.startswith("new ") for line in out.splitlines())
    assert any(line.startswith("old ") for line in out.splitlines())
