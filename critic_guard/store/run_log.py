"""Runs, steps and outcomes in SQL, shared by the SQLite and PostgreSQL backends.

Why shared: these are the rows the statistics and the report rest on (which run had which outcome, which verdicts it
got), so both backends run the same statements, on a :class:`~critic_guard.store.ledger.Ledger` inside the backend's
own transaction; the :class:`~critic_guard.store.dialect.Dialect` spells what differs (placeholders, the column that
orders runs as inserted, the ``LIMIT`` that means all). JSON comes back as text from SQLite and parsed from
PostgreSQL's ``jsonb``; both store the task as sorted JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from critic_guard.store.ledger import Ledger
from critic_guard.store.records import (
    OutcomeRecord,
    RunEnd,
    RunRecord,
    RunSummary,
    StepRecord,
    UnknownRunError,
)
from critic_guard.types import Action, Arm

__all__ = [
    "end_run",
    "get_outcome",
    "get_run",
    "insert_run",
    "insert_steps",
    "production_steps",
    "record_outcome",
    "run_summaries",
    "runs",
    "runs_of_task",
    "steps_of",
]

RUN_COLUMNS = (
    "run_id, guard_key, agent_name, arm, task_id, task, parent_run_id, fork_step, status, started_at, ended_at"
)
STEP_COLUMNS = (
    "run_id, step, attempt, p_fail, label, rationale, flagged, action, reason, critic_error, latency_s, created_at"
)

_RUN_SUMMARIES = """
SELECT r.guard_key, COUNT(*), SUM(COALESCE(s.judged, 0)), SUM(COALESCE(s.flagged, 0)),
       SUM(CASE WHEN s.flagged > 0 THEN 1 ELSE 0 END), SUM(COALESCE(s.errors, 0)), SUM(COALESCE(s.acted, 0)),
       COUNT(o.run_id), SUM(CASE WHEN o.run_id IS NULL OR o.success THEN 0 ELSE 1 END),
       SUM(CASE WHEN r.status = 'abandoned' THEN 1 ELSE 0 END)
FROM runs r
LEFT JOIN (
    SELECT run_id,
           SUM(CASE WHEN p_fail IS NOT NULL THEN 1 ELSE 0 END) AS judged,
           SUM(CASE WHEN p_fail IS NOT NULL AND flagged THEN 1 ELSE 0 END) AS flagged,
           SUM(CASE WHEN p_fail IS NULL THEN 1 ELSE 0 END) AS errors,
           SUM(CASE WHEN action <> 'none' THEN 1 ELSE 0 END) AS acted
    FROM steps GROUP BY run_id
) s ON s.run_id = r.run_id
LEFT JOIN outcomes o ON o.run_id = r.run_id
WHERE r.parent_run_id IS NULL
GROUP BY r.guard_key
ORDER BY r.guard_key
"""
"""Per guard key, in one pass (SQLite and PostgreSQL alike: ``flagged`` and ``success`` are 0/1 or booleans)."""


def _run_from_row(r: Sequence[Any]) -> RunRecord:
    task = json.loads(r[5]) if isinstance(r[5], str) else r[5]
    return RunRecord(
        run_id=r[0],
        guard_key=r[1],
        agent_name=r[2],
        arm=Arm(r[3]),
        task_id=r[4],
        task=task,
        parent_run_id=r[6],
        fork_step=r[7],
        status=r[8],
        started_at=r[9],
        ended_at=r[10],
    )


def _run_values(run: RunRecord) -> tuple[Any, ...]:
    """A run as the values of ``RUN_COLUMNS``; its task as sorted JSON text (what both backends store)."""
    task = None if run.task is None else json.dumps(dict(run.task), sort_keys=True, default=str)
    return (
        run.run_id,
        run.guard_key,
        run.agent_name,
        str(run.arm),
        run.task_id,
        task,
        run.parent_run_id,
        run.fork_step,
        run.status,
        run.started_at,
        run.ended_at,
    )


def _step_from_row(r: Sequence[Any]) -> StepRecord:
    """A step from the columns of ``STEP_COLUMNS`` (in the order of the record's fields)."""
    run_id, step, attempt, p_fail, label, rationale, flagged, action, *rest = r
    return StepRecord(run_id, step, attempt, p_fail, label, rationale, bool(flagged), Action(action), *rest)


def _step_values(step: StepRecord) -> tuple[Any, ...]:
    """A step as the values of ``STEP_COLUMNS`` (both backends accept a bool for ``flagged``)."""
    head = (step.run_id, step.step, step.attempt, step.p_fail, step.label, step.rationale, step.flagged)
    return (*head, str(step.action), str(step.reason), step.critic_error, step.latency_s, step.created_at)


# -- writes (inside the caller's transaction, or one statement on its own) ---------------------------------------


def insert_run(ledger: Ledger, run: RunRecord) -> bool:
    """Insert a run; False (and no change) if one with this id exists."""
    marks = ", ".join("?" * len(RUN_COLUMNS.split(", ")))
    cursor = ledger.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({marks}) ON CONFLICT (run_id) DO NOTHING", _run_values(run)
    )
    return cursor.rowcount == 1


def end_run(ledger: Ledger, end: RunEnd) -> None:
    cursor = ledger.execute(
        "UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ?", (end.status, end.ended_at, end.run_id)
    )
    if cursor.rowcount == 0:
        raise UnknownRunError(f"unknown run id {end.run_id!r}")


def insert_steps(ledger: Ledger, steps: Sequence[StepRecord]) -> None:
    marks = ", ".join("?" * len(STEP_COLUMNS.split(", ")))
    ledger.executemany(f"INSERT INTO steps ({STEP_COLUMNS}) VALUES ({marks})", [_step_values(s) for s in steps])


def record_outcome(ledger: Ledger, run_id: str, success: bool, recorded_at: float) -> OutcomeRecord:
    """Insert the run's outcome unless it has one; return the stored outcome (the caller compares the value)."""
    if ledger.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        raise UnknownRunError(f"unknown run id {run_id!r}")
    ledger.execute(
        "INSERT INTO outcomes (run_id, success, recorded_at) VALUES (?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
        (run_id, success, recorded_at),
    )
    row = ledger.execute("SELECT run_id, success, recorded_at FROM outcomes WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:  # pragma: no cover - inserted or found above, in this transaction
        raise RuntimeError(f"outcome of run {run_id!r} vanished inside a transaction")
    return OutcomeRecord(row[0], bool(row[1]), row[2])


# -- reads --------------------------------------------------------------------------------------------------------


def get_run(ledger: Ledger, run_id: str) -> RunRecord:
    row = ledger.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise UnknownRunError(f"unknown run id {run_id!r}")
    return _run_from_row(row)


def steps_of(ledger: Ledger, run_id: str) -> list[StepRecord]:
    rows = ledger.execute(
        f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY step, attempt, id", (run_id,)
    ).fetchall()
    return [_step_from_row(r) for r in rows]


def production_steps(ledger: Ledger, guard_key: str) -> list[tuple[StepRecord, bool | None]]:
    """The steps of the key's production runs, each with its run's outcome, in one statement: runs in the order of
    :func:`runs`, each run's steps in the order of :func:`steps_of`."""
    steps = ", ".join(f"s.{column}" for column in STEP_COLUMNS.split(", "))
    rows = ledger.execute(
        f"SELECT {steps}, o.success FROM runs r JOIN steps s ON s.run_id = r.run_id "
        "LEFT JOIN outcomes o ON o.run_id = r.run_id WHERE r.guard_key = ? AND r.parent_run_id IS NULL "
        f"ORDER BY r.started_at, r.{ledger.dialect.insertion_order}, s.step, s.attempt, s.id",
        (guard_key,),
    ).fetchall()
    return [(_step_from_row(r[:-1]), None if r[-1] is None else bool(r[-1])) for r in rows]


def get_outcome(ledger: Ledger, run_id: str) -> OutcomeRecord | None:
    row = ledger.execute(
        "SELECT r.run_id, o.success, o.recorded_at FROM runs r LEFT JOIN outcomes o ON o.run_id = r.run_id "
        "WHERE r.run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise UnknownRunError(f"unknown run id {run_id!r}")
    run, success, recorded_at = row
    return None if success is None else OutcomeRecord(run, bool(success), recorded_at)


def runs(ledger: Ledger, guard_key: str | None, limit: int | None) -> list[RunRecord]:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    where, params = ("WHERE guard_key = ?", [guard_key]) if guard_key is not None else ("", [])
    order = ledger.dialect.insertion_order
    rows = ledger.execute(
        f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY started_at, {order} LIMIT ?",
        [*params, ledger.dialect.no_limit if limit is None else limit],
    ).fetchall()
    return [_run_from_row(r) for r in rows]


def runs_of_task(ledger: Ledger, guard_key: str, task_id: str) -> list[RunRecord]:
    rows = ledger.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE task_id = ? AND guard_key = ? ORDER BY started_at, run_id",
        (task_id, guard_key),
    ).fetchall()
    return [_run_from_row(r) for r in rows]


def run_summaries(ledger: Ledger) -> list[RunSummary]:
    rows = ledger.execute(_RUN_SUMMARIES).fetchall()
    return [RunSummary(r[0], *(int(v or 0) for v in r[1:])) for r in rows]
