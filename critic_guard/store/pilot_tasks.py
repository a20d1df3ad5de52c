"""The pilot bookkeeping table (``pilot_tasks``) in SQL, shared by the SQLite and PostgreSQL backends.

Why a table of its own: a pilot must survive ``kill -9`` and be rerun with the same command without losing a pair
or counting one twice (:mod:`critic_guard.pilot`). Pairs alone cannot say which task a pair stands for in *this*
pilot, nor whether a task was started and never finished; one row per (pilot, task) does. The statements run on a
:class:`~critic_guard.store.ledger.Ledger`, inside the backend's own read or write transaction, so the two
backends behave the same (``tests/store_suite.py``).

Schema (migration 3 in both backends)::

    pilot_tasks (pilot_key, task_id, status, attempt_id, attempts, abandoned, run_id, error, updated_at)
    PRIMARY KEY (pilot_key, task_id)

plus an index ``runs_by_task`` on ``runs (task_id)``, which a resumed pilot uses to find an attempt's runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from critic_guard.store.records import PilotTaskRecord, PilotTaskStatus

if TYPE_CHECKING:
    from critic_guard.store.ledger import Ledger

__all__ = ["PILOT_TASK_COLUMNS", "finish", "records", "start"]

PILOT_TASK_COLUMNS = "pilot_key, task_id, status, attempt_id, attempts, abandoned, updated_at, run_id, error"


def _record(r: Sequence[Any]) -> PilotTaskRecord:
    """A row of ``PILOT_TASK_COLUMNS`` (in the order of the record's fields)."""
    return PilotTaskRecord(*r)


def records(ledger: Ledger, pilot_key: str) -> list[PilotTaskRecord]:
    rows = ledger.execute(
        f"SELECT {PILOT_TASK_COLUMNS} FROM pilot_tasks WHERE pilot_key = ? ORDER BY task_id", (pilot_key,)
    ).fetchall()
    return [_record(r) for r in rows]


def start(ledger: Ledger, pilot_key: str, task_id: str, attempt_id: str, abandoned: int, at: float) -> PilotTaskRecord:
    """Insert the row, or begin another attempt of a task that is not done; return the row as stored."""
    if abandoned < 0:
        raise ValueError(f"abandoned must be >= 0, got {abandoned}")
    ledger.execute(
        f"INSERT INTO pilot_tasks ({PILOT_TASK_COLUMNS}) VALUES (?, ?, ?, ?, 1, ?, ?, NULL, NULL) "
        "ON CONFLICT (pilot_key, task_id) DO UPDATE SET status = excluded.status, "
        "attempt_id = excluded.attempt_id, attempts = pilot_tasks.attempts + 1, "
        "abandoned = pilot_tasks.abandoned + excluded.abandoned, run_id = NULL, error = NULL, "
        "updated_at = excluded.updated_at WHERE pilot_tasks.status <> ?",
        (pilot_key, task_id, str(PilotTaskStatus.RUNNING), attempt_id, abandoned, at, str(PilotTaskStatus.DONE)),
    )
    row = ledger.execute(
        f"SELECT {PILOT_TASK_COLUMNS} FROM pilot_tasks WHERE pilot_key = ? AND task_id = ?", (pilot_key, task_id)
    ).fetchone()
    if row is None:  # pragma: no cover - inserted or kept above, in this transaction
        raise RuntimeError(f"pilot task {pilot_key!r}/{task_id!r} vanished inside a transaction")
    return _record(row)


def finish(
    ledger: Ledger,
    pilot_key: str,
    task_id: str,
    attempt_id: str,
    status: PilotTaskStatus,
    run_id: str | None,
    error: str | None,
    at: float,
) -> bool:
    if status is PilotTaskStatus.RUNNING:
        raise ValueError("a pilot task finishes as 'done' or 'failed', not 'running'")
    cursor = ledger.execute(
        "UPDATE pilot_tasks SET status = ?, run_id = ?, error = ?, updated_at = ? "
        "WHERE pilot_key = ? AND task_id = ? AND attempt_id = ? AND status = ?",
        (str(status), run_id, error, at, pilot_key, task_id, attempt_id, str(PilotTaskStatus.RUNNING)),
    )
    return cursor.rowcount == 1
