"""The default store: one SQLite file (stdlib ``sqlite3``), WAL journal, ``synchronous=NORMAL``.

Why synchronous writes and no background writer: in WAL mode with ``synchronous=NORMAL`` a commit appends to the
WAL without an fsync, which costs about 20 µs per step here (``benchmarks/store_writes.py``), far below the guard's
0.5 ms budget. Nothing is lost if the process crashes; a power loss or OS crash can lose the last commits (SQLite's
documented trade-off for NORMAL in WAL mode), never corrupt the file.

Thread safety: one connection guarded by a lock (the guard runs in LangGraph worker threads and in asyncio code;
each call holds the lock for tens of microseconds). Several processes may share the file: SQLite's own locking and
a busy timeout serialise their writes. The busy timeout is 5 s, except inside :meth:`Store.wait_at_most` (the
guard's calls on the user's path): there both the wait for this lock and SQLite's busy wait are bounded by the
block's limit, so another process holding the write lock costs a user's request that bound, not 5 s per write.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from critic_guard.store.base import (
    OutcomeConflictError,
    OutcomeRecord,
    RunEnd,
    RunRecord,
    StepRecord,
    StoreBusyError,
    UnknownRunError,
)
from critic_guard.store.ledger import SQLITE, Ledger, LedgerStore
from critic_guard.store.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    run_from_row,
    run_values,
    step_from_row,
    step_values,
)
from critic_guard.store.step_writer import StepWriter

__all__ = ["MIGRATIONS", "SQLiteStore", "migrate"]

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                guard_key TEXT NOT NULL,
                agent_name TEXT NOT NULL,
                arm TEXT NOT NULL,
                task_id TEXT,
                task TEXT,
                parent_run_id TEXT,
                fork_step INTEGER,
                status TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL
            )""",
            "CREATE INDEX runs_by_guard ON runs (guard_key, started_at)",
            """CREATE TABLE steps (
                id INTEGER PRIMARY KEY,
                run_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                p_fail REAL,
                label TEXT,
                rationale TEXT,
                flagged INTEGER NOT NULL,
                action TEXT NOT NULL,
                reason TEXT NOT NULL,
                critic_error TEXT,
                latency_s REAL NOT NULL,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX steps_by_run ON steps (run_id, step, attempt)",
            """CREATE TABLE outcomes (
                run_id TEXT PRIMARY KEY,
                success INTEGER NOT NULL,
                recorded_at REAL NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            """CREATE TABLE pairs (
                pair_id TEXT PRIMARY KEY,
                guard_key TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('ab', 'aa')),
                design TEXT NOT NULL CHECK (design IN ('fork', 'full')),
                task_id TEXT,
                control_run_id TEXT NOT NULL,
                treatment_run_id TEXT NOT NULL,
                flagged INTEGER NOT NULL,
                fork_step INTEGER,
                fork_checkpoint_id TEXT,
                status TEXT NOT NULL CHECK (status IN ('open', 'complete', 'incomplete')),
                reason TEXT,
                control_success INTEGER,
                treatment_success INTEGER,
                created_at REAL NOT NULL,
                completed_at REAL
            )""",
            "CREATE INDEX pairs_by_guard ON pairs (guard_key, status, created_at)",
            "CREATE INDEX pairs_by_control_run ON pairs (control_run_id)",
            "CREATE INDEX pairs_by_treatment_run ON pairs (treatment_run_id)",
            """CREATE TABLE guards (
                guard_key TEXT PRIMARY KEY,
                state TEXT NOT NULL CHECK (state IN ('pilot', 'enabled', 'disabled')),
                monitor TEXT NOT NULL,
                n00 INTEGER NOT NULL,
                n01 INTEGER NOT NULL,
                n10 INTEGER NOT NULL,
                n11 INTEGER NOT NULL,
                aa_pairs INTEGER NOT NULL,
                aa_discordant INTEGER NOT NULL,
                incomplete INTEGER NOT NULL,
                state_since_t INTEGER NOT NULL,
                version INTEGER NOT NULL,
                updated_at REAL NOT NULL
            )""",
            """CREATE TABLE transitions (
                id INTEGER PRIMARY KEY,
                guard_key TEXT NOT NULL,
                from_state TEXT NOT NULL,
                to_state TEXT NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                at REAL NOT NULL,
                evidence TEXT NOT NULL
            )""",
            "CREATE INDEX transitions_by_guard ON transitions (guard_key, id)",
        ),
    ),
    (
        3,
        (
            """CREATE TABLE pilot_tasks (
                pilot_key TEXT NOT NULL,
                task_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
                attempt_id TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                abandoned INTEGER NOT NULL,
                updated_at REAL NOT NULL,
                run_id TEXT,
                error TEXT,
                PRIMARY KEY (pilot_key, task_id)
            )""",
            "CREATE INDEX runs_by_task ON runs (task_id)",
        ),
    ),
)
"""Schema versions in order. A later release appends ``(3, (...))``; never edit an applied version."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version and return it. Idempotent, and safe when processes race.

    ``BEGIN IMMEDIATE`` takes the write lock before reading the version, so two processes opening a new file at the
    same time apply each migration once. The connection must be in autocommit mode (``isolation_level=None``).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise RuntimeError(
                f"this store was written by a newer critic-guard (schema version {current}, this version knows "
                f"up to {latest}); upgrade critic-guard"
            )
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return latest


def _create_private(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite opens it, unless it exists (its mode is kept).

    SQLite creates the ``-wal``, ``-shm`` and journal files with the database file's permissions, so they are
    owner-only too. Why at creation and not by ``chmod`` afterwards: there is no moment when another user could
    open the file (docs/telemetry.md, "What the store keeps").
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SQLiteStore(LedgerStore):
    """A :class:`Store` in one SQLite file (``":memory:"`` for a throwaway in-process store)."""

    def __init__(self, path: str | Path = "critic_guard.db", *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            _create_private(Path(self.path))
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
        self._busy_ms = self._default_busy_ms = max(1, round(busy_timeout_s * 1000))
        self._closed = False
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self.schema_version = migrate(self._conn)
        self._steps = StepWriter(self._insert_steps, unavailable=(sqlite3.OperationalError,))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the connection's lock, with SQLite's busy timeout set for this call: the default, or what is left
        of the thread's :meth:`~critic_guard.store.Store.wait_at_most` bound after waiting for the lock."""
        limit = self.wait_limit()
        if limit is None:
            self._lock.acquire()
            busy_ms = self._default_busy_ms
        else:
            started = time.monotonic()
            if not self._lock.acquire(timeout=limit):
                raise StoreBusyError(f"the SQLite store {self.path!r} stayed busy for {limit:g}s (another thread)")
            busy_ms = max(1, round((limit - (time.monotonic() - started)) * 1000))
        try:
            if busy_ms != self._busy_ms and not self._closed:
                self._conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
                self._busy_ms = busy_ms
            yield
        finally:
            self._lock.release()

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._settle_readers()
        with self._locked():
            return self._conn.execute(sql, params).fetchall()

    def add_run(self, run: RunRecord) -> bool:
        with self._locked():
            return self._insert_run(run)

    def end_run(self, run_id: str, *, status: str, ended_at: float) -> None:
        with self._locked():
            self._end_run(RunEnd(run_id, status, ended_at))

    def write_runs(self, writes: Sequence[RunRecord | RunEnd]) -> None:
        with self._locked():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for write in writes:
                    if isinstance(write, RunEnd):
                        self._end_run(write)
                    else:
                        self._insert_run(write)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _insert_run(self, run: RunRecord) -> bool:
        cursor = self._conn.execute(
            f"INSERT OR IGNORE INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run_values(run)
        )
        return cursor.rowcount == 1

    def _end_run(self, end: RunEnd) -> None:
        cursor = self._conn.execute(
            "UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ?", (end.status, end.ended_at, end.run_id)
        )
        if cursor.rowcount == 0:
            raise UnknownRunError(f"unknown run id {end.run_id!r}")

    def _insert_steps(self, steps: Sequence[StepRecord]) -> None:
        with self._locked():
            if self._closed:
                raise RuntimeError("the store is closed")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    f"INSERT INTO steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [step_values(s) for s in steps],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record_outcome(self, run_id: str, success: bool, *, recorded_at: float) -> OutcomeRecord:
        with self._locked():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                    raise UnknownRunError(f"unknown run id {run_id!r}")
                self._conn.execute(
                    "INSERT OR IGNORE INTO outcomes (run_id, success, recorded_at) VALUES (?, ?, ?)",
                    (run_id, int(success), recorded_at),
                )
                row = self._conn.execute(
                    "SELECT run_id, success, recorded_at FROM outcomes WHERE run_id = ?", (run_id,)
                ).fetchone()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        outcome = OutcomeRecord(row[0], bool(row[1]), row[2])
        if outcome.success != success:
            raise OutcomeConflictError(
                f"run {run_id!r} already has outcome success={outcome.success}; refusing to overwrite with {success}"
            )
        return outcome

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._fetchall(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise UnknownRunError(f"unknown run id {run_id!r}")
        return run_from_row(rows[0], task_is_text=True)

    def _select_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._fetchall(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY step, attempt, id", (run_id,)
        )
        return [step_from_row(r) for r in rows]

    def get_outcome(self, run_id: str) -> OutcomeRecord | None:
        rows = self._fetchall(
            "SELECT r.run_id, o.success, o.recorded_at FROM runs r LEFT JOIN outcomes o ON o.run_id = r.run_id "
            "WHERE r.run_id = ?",
            (run_id,),
        )
        if not rows:
            raise UnknownRunError(f"unknown run id {run_id!r}")
        run, success, recorded_at = rows[0]
        return None if success is None else OutcomeRecord(run, bool(success), recorded_at)

    def runs(self, guard_key: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        where, params = ("WHERE guard_key = ?", [guard_key]) if guard_key is not None else ("", [])
        rows = self._fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY started_at, rowid LIMIT ?",
            [*params, -1 if limit is None else limit],
        )
        return [run_from_row(r, task_is_text=True) for r in rows]

    def forget_old_runs(self, keep: int) -> int:
        """Delete all but the newest ``keep`` runs (with their steps and outcomes) and the finished pairs of the
        deleted runs; runs of open pairs stay. Returns how many runs were deleted.

        For the guard's private in-memory store (``store=None``), which would otherwise grow with every run; never
        called on a store the user passed or named.
        """
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self._steps.flush(self.wait_limit())
        with self._writing() as _:
            deleted = self._conn.execute(
                "DELETE FROM runs WHERE rowid <= (SELECT rowid FROM runs ORDER BY rowid DESC LIMIT 1 OFFSET ?) "
                "AND run_id NOT IN (SELECT control_run_id FROM pairs WHERE status = 'open' "
                "UNION SELECT treatment_run_id FROM pairs WHERE status = 'open')",
                (keep,),
            ).rowcount
            if deleted:
                self._conn.execute("DELETE FROM outcomes WHERE run_id NOT IN (SELECT run_id FROM runs)")
                self._conn.execute("DELETE FROM steps WHERE run_id NOT IN (SELECT run_id FROM runs)")
                self._conn.execute(
                    "DELETE FROM pairs WHERE status != 'open' AND control_run_id NOT IN (SELECT run_id FROM runs) "
                    "AND treatment_run_id NOT IN (SELECT run_id FROM runs)"
                )
        return int(deleted)

    # -- pairs and the lifecycle -------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Ledger]:
        self._settle_readers()
        with self._locked():
            yield Ledger(self._conn.execute, SQLITE)

    @contextmanager
    def _writing(self) -> Iterator[Ledger]:
        """One ``BEGIN IMMEDIATE`` transaction: the database write lock is held from the first read on."""
        with self._locked():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Ledger(self._conn.execute, SQLITE)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._steps.close()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
