"""The report's band and proofs are what the lifecycle did: read from the monitor stored with each pair.

Each case is one where replaying a fresh monitor over pairs sorted by completion time (what the report did before
critic_guard/store/pair_track.py) tells another story: a human reset the monitor, or pairs completed in another
order than their timestamps say. Stores from before the snapshots still report, replaying only their own pairs.
Every case runs on SQLite and on a real PostgreSQL server (tests/pg_server.py), and both give the same numbers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import psycopg
import pytest
from store_suite import KEY, auto_rule, initial, make_run, make_step

from critic_guard.lifecycle import GuardState, override
from critic_guard.report.data import ReportData, from_store
from critic_guard.report.numbers import ReportNumbers, compute
from critic_guard.report.status import status_rows
from critic_guard.stats import run_monitor
from critic_guard.stats.monitor import MonitorState
from critic_guard.store import PairRecord, SQLiteStore, Store
from critic_guard.store.postgres import PostgresStore
from critic_guard.types import Arm
from tests.pg_fixtures import fresh_schema

HARM = (True, False)  # control succeeded, treatment failed: a disruption
TIE = (True, True)


class Opened:
    """A store and a way to run raw SQL on its database (to make it look like the previous version's)."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target
        self.store: Store = SQLiteStore(target) if kind == "sqlite" else PostgresStore(target)

    def reopen(self) -> None:
        self.store.close()
        self.store = SQLiteStore(self.target) if self.kind == "sqlite" else PostgresStore(self.target)

    def as_previous_version(self) -> None:
        """Drop the snapshots and their schema version: the file the previous release wrote."""
        self.store.close()
        statements = ("DROP TABLE pair_monitor", "DELETE FROM schema_version WHERE version = 4")
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.target, isolation_level=None)
            for statement in statements:
                conn.execute(statement)
            conn.close()
        else:
            with psycopg.connect(self.target, autocommit=True) as pg:
                for statement in statements:
                    pg.execute(statement)
        self.reopen()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opened]:
    if request.param == "sqlite":
        each = Opened("sqlite", str(tmp_path / "track.db"))
        yield each
        each.store.close()
        return
    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        each = Opened("postgres", url)
        yield each
        each.store.close()


def play(
    store: Store, outcomes: Sequence[tuple[bool, bool]], *, first: int = 0, at: Sequence[float] = ()
) -> list[MonitorState]:
    """Complete one flagged A/B pair per outcome in AUTO mode (pair ``first + i`` completed at ``at[i]``, default
    ``i``); the lifecycle's monitor after each, as the completing call returned it."""
    after = []
    for i, (control, treatment) in enumerate(outcomes, start=first):
        when = at[i - first] if at else 1000.0 + i
        prod, shadow = f"p{i:03d}", f"p{i:03d}~t"
        store.add_run(make_run(prod, started_at=when))
        store.add_run(make_run(shadow, arm=Arm.TREATMENT, parent_run_id=prod, started_at=when))
        store.add_step(make_step(prod, 0, p_fail=0.2))
        store.add_step(make_step(prod, 1 + i % 3, p_fail=0.9, flagged=True))
        store.open_pair(PairRecord(prod, KEY, prod, shadow, flagged=True, created_at=when))
        store.record_outcome(prod, control, recorded_at=when)
        store.record_outcome(shadow, treatment, recorded_at=when)
        update = store.complete_pair(prod, auto_rule(now=when), initial(), at=when)
        assert update is not None
        after.append(update.guard.monitor)
    return after


def _reset(store: Store) -> None:
    change = partial(override, state=GuardState.PILOT, reason="new critic", reset_monitor=True, now=5000.0)
    store.set_guard_state(KEY, change, initial())


def _replayed(data: ReportData) -> tuple[np.ndarray, int, int]:  # type: ignore[type-arg]
    """What the report showed before the snapshots: a fresh monitor over the pairs in the report's order (its band's
    upper end, harm and benefit proofs)."""
    x = np.array([[(int(p.control) - int(p.treatment) + 1) / 2.0 for p in data.pairs]])
    paths = run_monitor(x, alpha=0.05)
    assert paths.net_high is not None
    return paths.net_high[0], int(paths.harm_times()[0]), int(paths.benefit_times()[0])


def test_a_monitor_reset_is_shown_as_the_lifecycle_did_it(opened: Opened) -> None:
    store = opened.store
    before = play(store, [HARM, TIE] * 12)
    first_proof = before[-1].harm_proven_at
    assert first_proof is not None and store.get_guard(KEY).state is GuardState.DISABLED  # type: ignore[union-attr]
    _reset(store)
    after = play(store, [TIE, HARM] * 12, first=24)
    data = from_store(store, KEY, source="test")
    numbers = compute(data)
    track = numbers.monitor
    assert data.store is not None and data.store.track is not None
    assert data.store.track.resets == (24,) and data.store.track.replayed == 0
    highs = [m.band_high for m in before + after]
    assert track.low.tolist() == [m.band_low for m in before + after] and track.high.tolist() == highs
    assert track.high[23] < 0 and track.high[24] == 1.0  # a fresh monitor after the reset: the band starts over
    second_proof = after[-1].harm_proven_at
    assert second_proof is not None
    harm_moves = [t for t in data.store.transitions if t.to_state is GuardState.DISABLED]
    assert [t.evidence["pairs"] for t in harm_moves] == [first_proof, 24 + second_proof]
    assert track.harm_proven_at == 24 + second_proof  # the standing proof, numbered as the transitions are
    replay_high, replay_harm, _ = _replayed(data)
    assert replay_harm == first_proof != track.harm_proven_at and replay_high.tolist() != highs
    [row] = status_rows(store)
    assert f"harm proven at pair {track.harm_proven_at}" in _status_text(row)


def _status_text(row: dict[str, object]) -> str:
    from rich.console import Console

    from critic_guard.report.status import render_status

    console = Console(width=200, record=True)
    console.print(render_status([row]), crop=False)
    return console.export_text()


def test_pairs_completed_out_of_timestamp_order_keep_the_lifecycles_order(opened: Opened) -> None:
    outcomes = [HARM, TIE, (False, True), HARM, HARM, TIE, HARM, (False, False), HARM, HARM]
    skewed = [2000.0 - 10 * i for i in range(len(outcomes))]  # a replica whose clock runs backwards
    after = play(opened.store, outcomes, at=skewed)
    data = from_store(opened.store, KEY, source="test")
    assert [(p.control, p.treatment) for p in data.pairs] == outcomes
    track = compute(data).monitor
    assert track.low.tolist() == [m.band_low for m in after]
    assert track.high.tolist() == [m.band_high for m in after]
    assert [p.fork_step for p in data.pairs] == [1 + i % 3 for i in range(len(outcomes))]
    assert [p.p_fail for p in data.pairs] == [0.9] * len(outcomes)


def test_a_store_from_the_previous_version_still_reports_replaying_only_its_own_pairs(opened: Opened) -> None:
    old = [HARM, TIE, TIE, HARM, (False, True), HARM, TIE, HARM]
    play(opened.store, old)
    opened.as_previous_version()
    data = from_store(opened.store, KEY, source="test")
    assert data.store is not None and data.store.track is not None and data.store.track.replayed == len(old)
    replay_high, replay_harm, replay_benefit = _replayed(data)
    track = compute(data).monitor
    assert track.high.tolist() == replay_high.tolist()
    assert (track.harm_proven_at, track.benefit_proven_at) == (replay_harm or None, replay_benefit or None)
    after = play(opened.store, [HARM, TIE, HARM], first=len(old))  # the new version goes on storing snapshots
    data = from_store(opened.store, KEY, source="test")
    assert data.store is not None and data.store.track is not None and data.store.track.replayed == len(old)
    track = compute(data).monitor
    assert track.high[: len(old)].tolist() == replay_high.tolist()
    assert track.high[len(old) :].tolist() == [m.band_high for m in after]


def _report_of(each: Opened) -> tuple[ReportData, ReportNumbers]:
    outcomes = [HARM, TIE, (False, True), HARM, TIE, HARM, HARM, (False, False), HARM, HARM, TIE, HARM]
    try:
        play(each.store, outcomes[:6])
        _reset(each.store)
        play(each.store, outcomes[6:], first=6)
        data = from_store(each.store, KEY, source="test")
        return data, compute(data)
    finally:
        each.store.close()


@pytest.mark.postgres
def test_sqlite_and_postgres_give_the_same_report_numbers(tmp_path: Path, postgres_url: str) -> None:
    lite, lite_numbers = _report_of(Opened("sqlite", str(tmp_path / "same.db")))
    with fresh_schema(postgres_url) as url:
        pg, pg_numbers = _report_of(Opened("postgres", url))
    assert lite.pairs == pg.pairs and lite_numbers.to_dict() == pg_numbers.to_dict()
    assert lite_numbers.monitor.low.tolist() == pg_numbers.monitor.low.tolist()
    assert lite_numbers.monitor.high.tolist() == pg_numbers.monitor.high.tolist()
    assert lite.store is not None and pg.store is not None
    assert lite.store.track is not None and pg.store.track is not None
    assert lite.store.track.resets == pg.store.track.resets == (6,)
    assert list(lite.store.scores) == list(pg.store.scores) and list(lite.store.failed) == list(pg.store.failed)


def test_forgetting_old_runs_forgets_their_snapshots() -> None:
    with SQLiteStore(":memory:") as store:  # the guard's private store forgets old runs as it goes
        play(store, [HARM, TIE, TIE])
        assert store.forget_old_runs(2) == 4
        with store._reading() as ledger:
            assert ledger.execute("SELECT pair_id, seq FROM pair_monitor").fetchall() == [("p002", 3)]
