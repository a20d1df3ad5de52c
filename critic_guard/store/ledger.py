"""Pairs, guard records and transitions in SQL, shared by the SQLite and PostgreSQL backends.

Why shared: the atomic operations (complete a pair, mark one incomplete, override the state) are the part of the
store where a subtle difference between backends would let two replicas count a pair twice. So both backends run
the same statements and the same steps; a :class:`~critic_guard.store.dialect.Dialect` only says how to write a
placeholder and how to lock a row. A backend opens the transaction (SQLite ``BEGIN IMMEDIATE``, which takes the
database write lock; PostgreSQL a transaction whose ``SELECT ... FOR UPDATE`` locks the guard row) and hands its
connection to a :class:`Ledger` (``SQLStore._session`` in :mod:`critic_guard.store.sql_store`).

Lock order is always the guard row first, then the pair row, so two transactions never wait on each other in a
cycle. Under PostgreSQL's READ COMMITTED every statement after the lock sees what the previous lock holder
committed, which is why the pair and its outcomes are read only after the guard row is locked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from critic_guard.lifecycle import (
    GuardRecord,
    GuardState,
    Transition,
    apply_aa_pair,
    apply_incomplete,
    new_counts,
)
from critic_guard.store import pair_track
from critic_guard.store.dialect import Dialect, spell
from critic_guard.store.records import (
    ApplyPair,
    ChangeState,
    PairConflictError,
    PairKind,
    PairRecord,
    PairStateError,
    PairStatus,
    PairUpdate,
    UnknownPairError,
)

__all__ = ["PAIR_IDENTITY", "Cursor", "Ledger"]

PAIR_COLUMNS = (
    "pair_id, guard_key, kind, design, task_id, control_run_id, treatment_run_id, flagged, fork_step, "
    "fork_checkpoint_id, status, reason, control_success, treatment_success, created_at, completed_at"
)
GUARD_COLUMNS = (
    "guard_key, state, monitor, n00, n01, n10, n11, aa_pairs, aa_discordant, incomplete, state_since_t, version, "
    "updated_at"
)
TRANSITION_COLUMNS = "guard_key, from_state, to_state, reason, actor, at, evidence"
PAIR_IDENTITY = ("guard_key", "kind", "design", "control_run_id", "treatment_run_id", "flagged")
"""The fields that must agree when a pair id is opened twice."""


class Cursor(Protocol):
    """The part of a DB-API cursor the ledger uses (``sqlite3.Cursor`` and ``psycopg.Cursor`` both have it)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


Execute = Callable[[str, Sequence[Any]], Cursor]
ExecuteMany = Callable[[str, Sequence[Sequence[Any]]], object]


def _json_in(value: Any) -> Any:
    """A JSON column as Python: SQLite returns the text, PostgreSQL's jsonb the parsed value."""
    return json.loads(value) if isinstance(value, str) else value


def _optional_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def pair_from_row(r: Sequence[Any]) -> PairRecord:
    return PairRecord(
        pair_id=r[0],
        guard_key=r[1],
        kind=r[2],
        design=r[3],
        task_id=r[4],
        control_run_id=r[5],
        treatment_run_id=r[6],
        flagged=bool(r[7]),
        fork_step=r[8],
        fork_checkpoint_id=r[9],
        status=r[10],
        reason=r[11],
        control_success=_optional_bool(r[12]),
        treatment_success=_optional_bool(r[13]),
        created_at=r[14],
        completed_at=r[15],
    )


def _transition_from_row(r: Sequence[Any]) -> Transition:
    return Transition(
        guard_key=r[0],
        from_state=GuardState(r[1]),
        to_state=GuardState(r[2]),
        reason=r[3],
        actor=r[4],
        at=r[5],
        evidence=_json_in(r[6]),
    )


def _guard_from_row(r: Sequence[Any]) -> GuardRecord:
    from critic_guard.stats.monitor import MonitorState  # lazily: see critic_guard.lifecycle

    last = None if r[13] is None else _transition_from_row(r[13:20])
    return GuardRecord(
        guard_key=r[0],
        state=GuardState(r[1]),
        monitor=MonitorState.from_dict(_json_in(r[2])),
        counts=new_counts(r[3], r[4], r[5], r[6]),
        aa_pairs=r[7],
        aa_discordant=r[8],
        incomplete=r[9],
        state_since_t=r[10],
        version=r[11],
        updated_at=r[12],
        last_transition=last,
    )


def _guard_values(record: GuardRecord) -> tuple[Any, ...]:
    counts = record.counts
    return (
        record.guard_key,
        str(record.state),
        json.dumps(record.monitor.to_dict()),
        counts.n00,
        counts.n01,
        counts.n10,
        counts.n11,
        record.aa_pairs,
        record.aa_discordant,
        record.incomplete,
        record.state_since_t,
        record.version,
        record.updated_at,
    )


_GUARD_SELECT = (
    "SELECT g.guard_key, g.state, g.monitor, g.n00, g.n01, g.n10, g.n11, g.aa_pairs, g.aa_discordant, g.incomplete, "
    "g.state_since_t, g.version, g.updated_at, "
    "t.guard_key, t.from_state, t.to_state, t.reason, t.actor, t.at, t.evidence "
    "FROM guards g LEFT JOIN transitions t "
    "ON t.id = (SELECT MAX(id) FROM transitions WHERE guard_key = g.guard_key) "
    "WHERE g.guard_key = ?"
)


class Ledger:
    """The pair and lifecycle statements over one connection; the caller owns the transaction around it.

    The other store modules' statements (runs, steps and outcomes in :mod:`critic_guard.store.run_log`, the pilot
    bookkeeping in :mod:`critic_guard.store.pilot_tasks`) run through :meth:`execute` on the same ledger, so that
    they share its transaction and its dialect."""

    __slots__ = ("_dialect", "_execute", "_executemany")

    def __init__(self, execute: Execute, executemany: ExecuteMany, dialect: Dialect) -> None:
        self._execute = execute
        self._executemany = executemany
        self._dialect = dialect

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._execute(spell(sql, self._dialect.placeholder), params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` placeholders) in this ledger's transaction."""
        return self._run(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement (``?`` placeholders) once per row, in this ledger's transaction."""
        self._executemany(spell(sql, self._dialect.placeholder), rows)

    # -- reads ---------------------------------------------------------------------------------------------------

    def get_pair(self, pair_id: str, *, lock: bool = False) -> PairRecord:
        suffix = self._dialect.lock if lock else ""
        row = self._run(f"SELECT {PAIR_COLUMNS} FROM pairs WHERE pair_id = ?{suffix}", (pair_id,)).fetchone()
        if row is None:
            raise UnknownPairError(f"unknown pair id {pair_id!r}")
        return pair_from_row(row)

    def pairs_of_run(self, run_id: str) -> list[PairRecord]:
        rows = self._run(
            f"SELECT {PAIR_COLUMNS} FROM pairs WHERE control_run_id = ? OR treatment_run_id = ? "
            "ORDER BY created_at, pair_id",
            (run_id, run_id),
        ).fetchall()
        return [pair_from_row(r) for r in rows]

    def pairs(self, guard_key: str, status: PairStatus | str | None) -> list[PairRecord]:
        where, params = "guard_key = ?", [guard_key]
        if status is not None:
            where += " AND status = ?"
            params.append(str(PairStatus(status)))
        rows = self._run(
            f"SELECT {PAIR_COLUMNS} FROM pairs WHERE {where} ORDER BY created_at, pair_id", params
        ).fetchall()
        return [pair_from_row(r) for r in rows]

    def get_guard(self, guard_key: str, *, lock: bool = False) -> GuardRecord | None:
        if lock:  # FOR UPDATE may not sit on the nullable side of an outer join: lock the row on its own first
            self._run(f"SELECT version FROM guards WHERE guard_key = ?{self._dialect.lock}", (guard_key,))
        row = self._run(_GUARD_SELECT, (guard_key,)).fetchone()
        return None if row is None else _guard_from_row(row)

    def transitions(self, guard_key: str) -> list[Transition]:
        rows = self._run(
            f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE guard_key = ? ORDER BY id", (guard_key,)
        ).fetchall()
        return [_transition_from_row(r) for r in rows]

    def guard_keys(self) -> list[str]:
        rows = self._run("SELECT guard_key FROM guards UNION SELECT guard_key FROM pairs ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def outcomes(self, run_ids: Iterable[str]) -> dict[str, bool]:
        wanted = sorted(set(run_ids))
        marks = ", ".join("?" * len(wanted))
        rows = self._run(f"SELECT run_id, success FROM outcomes WHERE run_id IN ({marks})", wanted).fetchall()
        return {r[0]: bool(r[1]) for r in rows}

    # -- writes (inside the caller's transaction) ----------------------------------------------------------------

    def open_pair(self, pair: PairRecord) -> PairRecord:
        self._run(
            f"INSERT INTO pairs ({PAIR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (pair_id) DO NOTHING",
            (
                pair.pair_id,
                pair.guard_key,
                str(pair.kind),
                str(pair.design),
                pair.task_id,
                pair.control_run_id,
                pair.treatment_run_id,
                pair.flagged,
                pair.fork_step,
                pair.fork_checkpoint_id,
                str(pair.status),
                pair.reason,
                pair.control_success,
                pair.treatment_success,
                pair.created_at,
                pair.completed_at,
            ),
        )
        stored = self.get_pair(pair.pair_id)
        differs = [name for name in PAIR_IDENTITY if getattr(stored, name) != getattr(pair, name)]
        if differs:
            details = ", ".join(f"{n}={getattr(stored, n)!r} (new: {getattr(pair, n)!r})" for n in differs)
            raise PairConflictError(f"pair {pair.pair_id!r} is already open with other values: {details}")
        return stored

    def _lock_guard(self, initial: GuardRecord) -> GuardRecord:
        """The guard's record, locked for this transaction; inserted from ``initial`` first if missing."""
        marks = ", ".join("?" * len(_guard_values(initial)))
        self._run(
            f"INSERT INTO guards ({GUARD_COLUMNS}) VALUES ({marks}) ON CONFLICT (guard_key) DO NOTHING",
            _guard_values(initial),
        )
        record = self.get_guard(initial.guard_key, lock=True)
        if record is None:  # pragma: no cover - the insert above or a concurrent one made the row
            raise RuntimeError(f"guard row {initial.guard_key!r} vanished inside a transaction")
        return record

    def _save_guard(self, old: GuardRecord, new: GuardRecord) -> None:
        if new.guard_key != old.guard_key or new.version != old.version + 1:
            raise ValueError(
                f"a lifecycle update must keep the guard key and raise the version by one: {old.guard_key!r} "
                f"v{old.version} -> {new.guard_key!r} v{new.version}"
            )
        values = _guard_values(new)
        assignments = ", ".join(f"{name} = ?" for name in GUARD_COLUMNS.split(", ")[1:])
        cursor = self._run(
            f"UPDATE guards SET {assignments} WHERE guard_key = ? AND version = ?",
            (*values[1:], old.guard_key, old.version),
        )
        if cursor.rowcount != 1:  # pragma: no cover - the row lock makes this impossible
            raise RuntimeError(f"guard row {old.guard_key!r} changed under its lock")

    def _add_transition(self, transition: Transition) -> None:
        self._run(
            f"INSERT INTO transitions ({TRANSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                transition.guard_key,
                str(transition.from_state),
                str(transition.to_state),
                transition.reason,
                transition.actor,
                transition.at,
                json.dumps(dict(transition.evidence)),
            ),
        )

    def _check_initial(self, guard_key: str, initial: GuardRecord) -> None:
        if initial.guard_key != guard_key:
            raise ValueError(f"initial record is for guard {initial.guard_key!r}, the pair belongs to {guard_key!r}")

    def complete_pair(self, pair_id: str, apply: ApplyPair, initial: GuardRecord, *, at: float) -> PairUpdate | None:
        self._check_initial(self.get_pair(pair_id).guard_key, initial)
        record = self._lock_guard(initial)
        pair = self.get_pair(pair_id, lock=True)  # re-read under the guard lock: another replica may have won
        if pair.status is not PairStatus.OPEN:
            return None
        outcomes = self.outcomes((pair.control_run_id, pair.treatment_run_id))
        if pair.control_run_id not in outcomes or pair.treatment_run_id not in outcomes:
            return None
        control, treatment = outcomes[pair.control_run_id], outcomes[pair.treatment_run_id]
        if pair.kind is PairKind.AA:
            new, transition = apply_aa_pair(record, control, treatment, now=at)
        else:
            new, transition = apply(record, control, treatment)
            pair_track.write_snapshot(self, pair_id, new)  # the monitor after this pair, in this transaction
        self._save_guard(record, new)
        if transition is not None:
            self._add_transition(transition)
        new = replace(new, last_transition=transition or record.last_transition)
        self._run(
            "UPDATE pairs SET status = ?, control_success = ?, treatment_success = ?, completed_at = ? "
            "WHERE pair_id = ?",
            (str(PairStatus.COMPLETE), control, treatment, at, pair_id),
        )
        done = replace(
            pair, status=PairStatus.COMPLETE, control_success=control, treatment_success=treatment, completed_at=at
        )
        return PairUpdate(done, new, transition)

    def mark_incomplete(self, pair_id: str, reason: str, initial: GuardRecord, *, at: float) -> bool:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("marking a pair incomplete needs a reason (it is reported)")
        self._check_initial(self.get_pair(pair_id).guard_key, initial)
        record = self._lock_guard(initial)
        pair = self.get_pair(pair_id, lock=True)
        if pair.status is PairStatus.INCOMPLETE:
            return False
        if pair.status is PairStatus.COMPLETE:
            raise PairStateError(f"pair {pair_id!r} is complete (cell {pair.cell}); it cannot become incomplete")
        self._save_guard(record, apply_incomplete(record, now=at))
        self._run(
            "UPDATE pairs SET status = ?, reason = ?, completed_at = ? WHERE pair_id = ?",
            (str(PairStatus.INCOMPLETE), reason.strip(), at, pair_id),
        )
        return True

    def set_guard_state(
        self, guard_key: str, change: ChangeState, initial: GuardRecord
    ) -> tuple[GuardRecord, Transition]:
        self._check_initial(guard_key, initial)
        record = self._lock_guard(initial)
        new, transition = change(record)
        self._save_guard(record, new)
        self._add_transition(transition)
        return replace(new, last_transition=transition), transition
