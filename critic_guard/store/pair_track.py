"""The monitor after each pair, stored in the transaction that completed it, and the report's set-based reads.

Why a snapshot per pair: the report, ``critic-guard status`` and the traces must all tell what the lifecycle did.
Replaying a monitor over pairs sorted by completion time afterwards can differ from it (a human reset the monitor;
two replicas completed pairs in another order than their timestamps say). So :meth:`Ledger.complete_pair
<critic_guard.store.ledger.Ledger.complete_pair>` writes the monitor's state after each A/B pair into
``pair_monitor`` in the same transaction as the pair and the guard row (docs/report.md, "Net effect over time").

Why a table of its own rather than columns on ``pairs``: the migration only adds a table (no ``ALTER TABLE`` on
the busiest table, the same statement on SQLite and PostgreSQL); A/A and incomplete pairs, which the monitor never
sees, simply have no row; and "no row" is an unambiguous marker of a pair completed by a version before the
snapshots (those, and only those, are replayed: :mod:`critic_guard.report.track`).

``seq`` is the number of A/B pairs the guard had counted after this one (``GuardRecord.pairs_counted``): the order
the lifecycle folded pairs in, which the transitions' ``evidence["pairs"]`` also uses. ``t`` is the monitor's own
count, which restarts at a reset; ``seq - t`` is therefore the number of pairs before the monitor's current start.

The reads are a few statements for a whole guard key (joins and one correlated index probe per pair inside one
statement), never one query per pair: a store with a million pairs reports in seconds
(``benchmarks/report_scale.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from critic_guard.lifecycle import GuardRecord
    from critic_guard.store.ledger import Ledger

__all__ = [
    "SNAPSHOT_COLUMNS",
    "PairTallies",
    "TrackColumns",
    "TrackSource",
    "labeled_verdict_arrays",
    "pair_tallies",
    "snapshot_values",
    "track_columns",
    "write_snapshot",
]

SNAPSHOT_COLUMNS = (
    "pair_id, guard_key, seq, t, band_low, band_high, harm_log_wealth, benefit_log_wealth, harm_proven_at, "
    "benefit_proven_at, inconclusive_at, state"
)
_BATCH = 50_000


def snapshot_values(pair_id: str, record: GuardRecord) -> tuple[Any, ...]:
    """The ``pair_monitor`` row of ``pair_id`` for the guard record right after the lifecycle folded it in."""
    monitor = record.monitor
    return (
        pair_id,
        record.guard_key,
        record.pairs_counted,
        monitor.t,
        monitor.band_low,
        monitor.band_high,
        monitor.harm_log_wealth,
        monitor.benefit_log_wealth,
        monitor.harm_proven_at,
        monitor.benefit_proven_at,
        monitor.inconclusive_at,
        str(record.state),
    )


def write_snapshot(ledger: Ledger, pair_id: str, record: GuardRecord) -> None:
    """Store the monitor after ``pair_id`` (inside the ledger's transaction, beside the pair and the guard row)."""
    marks = ", ".join("?" * len(SNAPSHOT_COLUMNS.split(", ")))
    ledger.execute(f"INSERT INTO pair_monitor ({SNAPSHOT_COLUMNS}) VALUES ({marks})", snapshot_values(pair_id, record))


@dataclass(frozen=True, slots=True)
class TrackColumns:
    """A guard key's completed A/B pairs as columns, in the lifecycle's order (arrays of one length).

    ``cells``: ``2 * control + treatment``; ``fork_step``: the pair's fork step, else its production run's first
    flagged step (-1: not flagged, or no step rows); ``p_fail``: that step's score (NaN: none). The first
    ``replayed`` pairs have no snapshot (completed by a version before them: NaN bands, ``epoch`` -1), in completion
    order; the others follow in the lifecycle's order with the band after each and ``epoch = seq - t`` (pairs
    before the monitor's current start). ``last`` is ``(seq, t, harm_proven_at, benefit_proven_at)`` of the last
    snapshot, if any.
    """

    cells: NDArray[np.int64]
    flagged: NDArray[np.bool_]
    fork_step: NDArray[np.int64]
    p_fail: NDArray[np.float64]
    band_low: NDArray[np.float64]
    band_high: NDArray[np.float64]
    epoch: NDArray[np.int64]
    replayed: int
    last: tuple[int, int, int | None, int | None] | None


_PAIR_VALUES = """CASE WHEN p.control_success THEN 2 ELSE 0 END + CASE WHEN p.treatment_success THEN 1 ELSE 0 END,
       CASE WHEN p.flagged THEN 1 ELSE 0 END,
       CASE WHEN p.flagged THEN COALESCE(p.fork_step, f.step, -1) ELSE -1 END,
       CASE WHEN p.flagged THEN COALESCE(f.p_fail, -1.0) ELSE -1.0 END"""
_FIRST_FLAG = """LEFT JOIN steps f ON p.flagged AND f.id = (
    SELECT s.id FROM steps s
    WHERE s.run_id = CASE WHEN p.pair_id IN (p.control_run_id, p.treatment_run_id) THEN p.pair_id
                          ELSE p.control_run_id END
      AND s.flagged
    ORDER BY s.step, s.attempt, s.id LIMIT 1
)"""
"""The fork point: the production run's first flagged step (the pair's id is its production run's, when it is one
of its runs), one index probe per flagged pair inside the statement."""
_AB = "p.status = 'complete' AND p.kind = 'ab'"
_WITH_SNAPSHOT = f"""SELECT {_PAIR_VALUES}, m.band_low, m.band_high, m.seq - m.t
FROM pair_monitor m JOIN pairs p ON p.pair_id = m.pair_id {_FIRST_FLAG}
WHERE m.guard_key = ? AND {_AB} ORDER BY m.seq"""
_WITHOUT_SNAPSHOT = f"""SELECT {_PAIR_VALUES}, -2.0, 2.0, -1
FROM pairs p {_FIRST_FLAG}
WHERE p.guard_key = ? AND {_AB} AND NOT EXISTS (SELECT 1 FROM pair_monitor m WHERE m.pair_id = p.pair_id)
ORDER BY COALESCE(p.completed_at, 0), p.created_at, p.pair_id"""
_SNAPSHOTS_COMPLETE = """SELECT (SELECT COUNT(*) FROM pair_monitor WHERE guard_key = ?) =
       COALESCE((SELECT n00 + n01 + n10 + n11 FROM guards WHERE guard_key = ?), -1)"""
"""Whether every pair the lifecycle counted has its snapshot: then the search for pairs without one is skipped."""
_LAST = """SELECT seq, t, harm_proven_at, benefit_proven_at FROM pair_monitor WHERE guard_key = ?
ORDER BY seq DESC LIMIT 1"""


class _Batches(Protocol):
    def fetchmany(self, size: int) -> list[Any]: ...


def _matrix(cursor: Any, width: int) -> NDArray[np.float64]:
    """All rows of a cursor of numbers as one float matrix, fetched in batches (DB-API ``fetchmany``) so a
    million rows are never held as Python tuples at once."""
    import numpy as np

    source: _Batches = cursor
    parts = [np.empty((0, width))]
    while rows := source.fetchmany(_BATCH):
        parts.append(np.array(rows, dtype=np.float64).reshape(len(rows), width))
    return np.concatenate(parts)


def track_columns(ledger: Ledger, guard_key: str) -> TrackColumns:
    """The guard key's completed A/B pairs with the monitor after each: two or three statements for all of them."""
    import numpy as np

    complete = ledger.execute(_SNAPSHOTS_COMPLETE, (guard_key, guard_key)).fetchone()[0]
    old = np.empty((0, 7)) if complete else _matrix(ledger.execute(_WITHOUT_SNAPSHOT, (guard_key,)), 7)
    new = _matrix(ledger.execute(_WITH_SNAPSHOT, (guard_key,)), 7)
    rows = np.concatenate([old, new])
    band_low, band_high = rows[:, 4].copy(), rows[:, 5].copy()
    band_low[: len(old)] = band_high[: len(old)] = np.nan
    p_fail = rows[:, 3].copy()
    p_fail[p_fail < 0] = np.nan
    last = ledger.execute(_LAST, (guard_key,)).fetchone() if len(new) else None
    return TrackColumns(
        cells=rows[:, 0].astype(np.int64),
        flagged=rows[:, 1] > 0,
        fork_step=rows[:, 2].astype(np.int64),
        p_fail=p_fail,
        band_low=band_low,
        band_high=band_high,
        epoch=rows[:, 6].astype(np.int64),
        replayed=len(old),
        last=None if last is None else (int(last[0]), int(last[1]), last[2], last[3]),
    )


@dataclass(frozen=True, slots=True)
class PairTallies:
    """The guard key's pairs that are neither counted by the lifecycle nor on the track: still open, or excluded
    as incomplete (with why). A/A pairs are counted on the guard row (``GuardRecord.aa_pairs``)."""

    open_pairs: int
    incomplete_reasons: tuple[str, ...]


def pair_tallies(ledger: Ledger, guard_key: str) -> PairTallies:
    """Two statements over the ``(guard_key, status)`` index: they never touch the complete pairs."""
    still_open = ledger.execute(
        "SELECT COUNT(*) FROM pairs WHERE guard_key = ? AND status = 'open'", (guard_key,)
    ).fetchone()[0]
    reasons = ledger.execute(
        "SELECT reason FROM pairs WHERE guard_key = ? AND status = 'incomplete' ORDER BY created_at, pair_id",
        (guard_key,),
    ).fetchall()
    return PairTallies(int(still_open), tuple(r[0] or "no reason recorded" for r in reasons))


def labeled_verdict_arrays(ledger: Ledger, guard_key: str) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``(p_fail, failed)`` of every verdict of the guard's runs that have an outcome, in the order of
    :func:`critic_guard.calibration.labeled_verdicts` (runs by start and insertion, then steps), in one statement."""
    run_order = ledger.dialect.insertion_order
    cursor = ledger.execute(
        "SELECT s.p_fail, CASE WHEN o.success THEN 0 ELSE 1 END FROM runs r JOIN outcomes o ON o.run_id = r.run_id "
        "JOIN steps s ON s.run_id = r.run_id WHERE r.guard_key = ? AND s.p_fail IS NOT NULL "
        f"ORDER BY r.started_at, r.{run_order}, s.step, s.attempt, s.id",
        (guard_key,),
    )
    rows = _matrix(cursor, 2)
    return rows[:, 0].copy(), rows[:, 1] > 0


@runtime_checkable
class TrackSource(Protocol):
    """A store that can read a guard key's pairs and labeled verdicts set-based (both backends can)."""

    def track_columns(self, guard_key: str) -> TrackColumns: ...

    def pair_tallies(self, guard_key: str) -> PairTallies: ...

    def labeled_verdict_arrays(self, guard_key: str) -> tuple[NDArray[np.float64], NDArray[np.bool_]]: ...
