"""The PostgreSQL store: psycopg 3 with a small connection pool, for guards shared by several replicas.

Same schema and behaviour as :mod:`critic_guard.store.sqlite` (the shared suite in ``tests/store_suite.py`` runs
against both). What differs is how atomicity is obtained: SQLite serialises writers on one file lock, PostgreSQL
locks rows. Completing a pair inserts the guard row if it is missing (``ON CONFLICT DO NOTHING``), then locks it
with ``SELECT ... FOR UPDATE`` and only then reads the pair and its outcomes, so replicas that race on one guard
take turns and each sees what the previous one committed (:mod:`critic_guard.store.ledger`).

Connections run in autocommit mode; every multi-statement operation opens an explicit transaction. Migrations run
in one transaction under a transaction-level advisory lock, so replicas starting at the same time apply each
version once. A step write is one round trip (about 0.1-0.3 ms on a local server): fine for the hot path, but a
remote database adds its latency to every step.

Waiting is bounded on the user's path: inside :meth:`~critic_guard.store.Store.wait_at_most` a call waits at most
the bound for a pooled connection (``PoolTimeout`` after it, e.g. while the server is down) and its statements run
in a transaction with that ``statement_timeout`` (a hung server or a held row lock). Outside it (the CLI, the
pilot's bookkeeping, the step writer) the pool's ``timeout_s`` applies.

Requires the ``postgres`` extra: ``pip install 'critic-guard[postgres]'``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from critic_guard.store.base import (
    OutcomeConflictError,
    OutcomeRecord,
    RunEnd,
    RunRecord,
    StepRecord,
    UnknownRunError,
)
from critic_guard.store.ledger import POSTGRES, Ledger, LedgerStore
from critic_guard.store.rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    run_from_row,
    run_values,
    step_from_row,
    step_values,
)
from critic_guard.store.step_writer import StepWriter

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import ConnectionPool, PoolTimeout
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "the PostgreSQL store needs psycopg 3 and psycopg-pool: pip install 'critic-guard[postgres]'", name=exc.name
    ) from exc

__all__ = ["MIGRATIONS", "PostgresStore"]

_Conn = psycopg.Connection[tuple[Any, ...]]
_MIGRATION_LOCK = 0x63675F6D6967  # pg_advisory_xact_lock key ("cg_mig"), shared by all critic-guard stores

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE runs (
                seq BIGSERIAL NOT NULL,
                run_id TEXT PRIMARY KEY,
                guard_key TEXT NOT NULL,
                agent_name TEXT NOT NULL,
                arm TEXT NOT NULL,
                task_id TEXT,
                task JSONB,
                parent_run_id TEXT,
                fork_step INTEGER,
                status TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                ended_at DOUBLE PRECISION
            )""",
            "CREATE INDEX runs_by_guard ON runs (guard_key, started_at, seq)",
            "CREATE INDEX runs_by_start ON runs (started_at, seq)",
            """CREATE TABLE steps (
                id BIGSERIAL PRIMARY KEY,
                run_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                p_fail DOUBLE PRECISION,
                label TEXT,
                rationale TEXT,
                flagged BOOLEAN NOT NULL,
                action TEXT NOT NULL,
                reason TEXT NOT NULL,
                critic_error TEXT,
                latency_s DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX steps_by_run ON steps (run_id, step, attempt)",
            """CREATE TABLE outcomes (
                run_id TEXT PRIMARY KEY,
                success BOOLEAN NOT NULL,
                recorded_at DOUBLE PRECISION NOT NULL
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
                flagged BOOLEAN NOT NULL,
                fork_step INTEGER,
                fork_checkpoint_id TEXT,
                status TEXT NOT NULL CHECK (status IN ('open', 'complete', 'incomplete')),
                reason TEXT,
                control_success BOOLEAN,
                treatment_success BOOLEAN,
                created_at DOUBLE PRECISION NOT NULL,
                completed_at DOUBLE PRECISION
            )""",
            "CREATE INDEX pairs_by_guard ON pairs (guard_key, status, created_at)",
            "CREATE INDEX pairs_by_control_run ON pairs (control_run_id)",
            "CREATE INDEX pairs_by_treatment_run ON pairs (treatment_run_id)",
            """CREATE TABLE guards (
                guard_key TEXT PRIMARY KEY,
                state TEXT NOT NULL CHECK (state IN ('pilot', 'enabled', 'disabled')),
                monitor JSONB NOT NULL,
                n00 INTEGER NOT NULL,
                n01 INTEGER NOT NULL,
                n10 INTEGER NOT NULL,
                n11 INTEGER NOT NULL,
                aa_pairs INTEGER NOT NULL,
                aa_discordant INTEGER NOT NULL,
                incomplete INTEGER NOT NULL,
                state_since_t INTEGER NOT NULL,
                version BIGINT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE transitions (
                id BIGSERIAL PRIMARY KEY,
                guard_key TEXT NOT NULL,
                from_state TEXT NOT NULL,
                to_state TEXT NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                evidence JSONB NOT NULL
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
                updated_at DOUBLE PRECISION NOT NULL,
                run_id TEXT,
                error TEXT,
                PRIMARY KEY (pilot_key, task_id)
            )""",
            "CREATE INDEX runs_by_task ON runs (task_id)",
        ),
    ),
)
"""Schema versions in order, numbered as SQLite's. A later release appends; never edit an applied version."""


def migrate(conn: _Conn) -> int:
    """Bring the schema (in the connection's ``search_path``) to the newest version and return it.

    One transaction under ``pg_advisory_xact_lock``: a second replica waits, then finds nothing left to do.
    """
    latest = MIGRATIONS[-1][0]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if current > latest:
            raise RuntimeError(
                f"this store was written by a newer critic-guard (schema version {current}, this version knows "
                f"up to {latest}); upgrade critic-guard"
            )
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return latest


class PostgresStore(LedgerStore):
    """A :class:`Store` in a PostgreSQL database (``url``: a ``postgresql://`` URL or a libpq conninfo string).

    The tables live in the connection's ``search_path`` (default ``public``); pass e.g.
    ``?options=-csearch_path%3Dcritic_guard`` in the URL to use another schema (it must exist).
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        connect_timeout_s: float = 10.0,
        timeout_s: float = 5.0,
    ) -> None:
        """``connect_timeout_s``: how long opening waits for the server. ``timeout_s``: how long a call waits for a
        pooled connection when all are busy or the server went away (then ``psycopg_pool.PoolTimeout``; the guard
        counts it as a store error and the agent goes on)."""
        self.url = url
        self._closed = False
        self._pool: ConnectionPool[_Conn] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            name="critic-guard",
            timeout=timeout_s,
            open=True,
        )
        try:
            try:
                self._pool.wait(timeout=connect_timeout_s)
            except PoolTimeout as exc:
                raise ConnectionError(
                    f"cannot connect to the PostgreSQL store {_redact(url)!r} within {connect_timeout_s:g}s; is the "
                    "server running and the URL right?"
                ) from exc
            with self._pool.connection() as conn:
                self.schema_version = migrate(conn)
        except BaseException:
            self._pool.close()
            raise
        self._steps = StepWriter(self._insert_steps, unavailable=(psycopg.OperationalError,))

    @contextmanager
    def _connection(self, *, transaction: bool = False) -> Iterator[_Conn]:
        """A pooled connection (in a transaction if asked, or if the thread's wait is bounded: the statement
        timeout is set for that transaction only, so the pooled connection keeps its defaults)."""
        limit = self.wait_limit()
        if limit is None:
            with self._pool.connection() as conn:
                if transaction:
                    with conn.transaction():
                        yield conn
                else:
                    yield conn
            return
        with self._pool.connection(timeout=limit) as conn, conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{max(1, round(limit * 1000))}ms",))
            yield conn

    def _transaction(self) -> AbstractContextManager[_Conn]:
        return self._connection(transaction=True)

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._settle_readers()
        with self._connection() as conn:
            return conn.execute(sql, params).fetchall()

    # -- runs, steps, outcomes -----------------------------------------------------------------------------------

    def add_run(self, run: RunRecord) -> bool:
        with self._connection() as conn:
            return _insert_run(conn, run)

    def end_run(self, run_id: str, *, status: str, ended_at: float) -> None:
        with self._connection() as conn:
            _end_run(conn, RunEnd(run_id, status, ended_at))

    def write_runs(self, writes: Sequence[RunRecord | RunEnd]) -> None:
        with self._transaction() as conn:
            for write in writes:
                if isinstance(write, RunEnd):
                    _end_run(conn, write)
                else:
                    _insert_run(conn, write)

    def _insert_steps(self, steps: Sequence[StepRecord]) -> None:
        with self._transaction() as conn, conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO steps ({STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [step_values(s) for s in steps],
            )

    def record_outcome(self, run_id: str, success: bool, *, recorded_at: float) -> OutcomeRecord:
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = %s", (run_id,)).fetchone() is None:
                raise UnknownRunError(f"unknown run id {run_id!r}")
            conn.execute(
                "INSERT INTO outcomes (run_id, success, recorded_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (run_id) DO NOTHING",
                (run_id, success, recorded_at),
            )
            row = conn.execute(
                "SELECT run_id, success, recorded_at FROM outcomes WHERE run_id = %s", (run_id,)
            ).fetchone()
        if row is None:  # pragma: no cover - inserted or found above, in this transaction
            raise RuntimeError(f"outcome of run {run_id!r} vanished inside a transaction")
        outcome = OutcomeRecord(row[0], bool(row[1]), row[2])
        if outcome.success != success:
            raise OutcomeConflictError(
                f"run {run_id!r} already has outcome success={outcome.success}; refusing to overwrite with {success}"
            )
        return outcome

    def get_run(self, run_id: str) -> RunRecord:
        rows = self._fetchall(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
        if not rows:
            raise UnknownRunError(f"unknown run id {run_id!r}")
        return run_from_row(rows[0], task_is_text=False)

    def _select_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._fetchall(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = %s ORDER BY step, attempt, id", (run_id,)
        )
        return [step_from_row(r) for r in rows]

    def get_outcome(self, run_id: str) -> OutcomeRecord | None:
        rows = self._fetchall(
            "SELECT r.run_id, o.success, o.recorded_at FROM runs r LEFT JOIN outcomes o ON o.run_id = r.run_id "
            "WHERE r.run_id = %s",
            (run_id,),
        )
        if not rows:
            raise UnknownRunError(f"unknown run id {run_id!r}")
        run, success, recorded_at = rows[0]
        return None if success is None else OutcomeRecord(run, bool(success), recorded_at)

    def runs(self, guard_key: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        where, params = ("WHERE guard_key = %s", [guard_key]) if guard_key is not None else ("", [])
        rows = self._fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY started_at, seq LIMIT %s", [*params, limit]
        )
        return [run_from_row(r, task_is_text=False) for r in rows]

    # -- pairs and the lifecycle ---------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Ledger]:
        self._settle_readers()
        with self._connection() as conn:
            yield Ledger(conn.execute, POSTGRES)

    @contextmanager
    def _writing(self) -> Iterator[Ledger]:
        with self._transaction() as conn:
            yield Ledger(conn.execute, POSTGRES)

    def close(self) -> None:
        if not self._closed:
            self._steps.close()
            self._closed = True
            self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.url)!r})"


def _insert_run(conn: _Conn, run: RunRecord) -> bool:
    cursor = conn.execute(
        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (run_id) DO NOTHING",
        run_values(run),
    )
    return cursor.rowcount == 1


def _end_run(conn: _Conn, end: RunEnd) -> None:
    cursor = conn.execute(
        "UPDATE runs SET status = %s, ended_at = %s WHERE run_id = %s", (end.status, end.ended_at, end.run_id)
    )
    if cursor.rowcount == 0:
        raise UnknownRunError(f"unknown run id {end.run_id!r}")


def _redact(url: str) -> str:
    """The URL without its password, for logs and reprs."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable conninfo>"
    shown = {k: v for k, v in info.items() if k != "password"}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
