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

from critic_guard.store import schema
from critic_guard.store.dialect import SQLITE
from critic_guard.store.ledger import Ledger
from critic_guard.store.records import StepRecord, StoreBusyError
from critic_guard.store.sql_store import SQLStore
from critic_guard.store.step_writer import StepWriter

__all__ = ["MIGRATIONS", "SQLiteStore", "migrate"]

MIGRATIONS = schema.migrations(SQLITE)
"""Schema versions in order (:mod:`critic_guard.store.schema`, spelled for SQLite)."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version and return it. Idempotent, and safe when processes race.

    ``BEGIN IMMEDIATE`` takes the write lock before reading the version, so two processes opening a new file at the
    same time apply each migration once. The connection must be in autocommit mode (``isolation_level=None``).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        latest = schema.upgrade(conn.execute, SQLITE, MIGRATIONS)
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


class SQLiteStore(SQLStore):
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

    @contextmanager
    def _session(self, *, transaction: bool) -> Iterator[Ledger]:
        """The connection, under its lock; a transaction is ``BEGIN IMMEDIATE``, which holds the database write
        lock from its first read on (so the shared SQL needs no row locks here)."""
        with self._locked():
            ledger = Ledger(self._conn.execute, self._conn.executemany, SQLITE)
            if not transaction:
                yield ledger
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield ledger
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _insert_steps(self, steps: Sequence[StepRecord]) -> None:
        if self._closed:  # a late batch (after close) is refused with a clear error
            raise RuntimeError("the store is closed")
        super()._insert_steps(steps)

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
                self._conn.execute("DELETE FROM pair_monitor WHERE pair_id NOT IN (SELECT pair_id FROM pairs)")
        return int(deleted)

    def close(self) -> None:
        self._steps.close()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
