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
from contextlib import contextmanager
from typing import Any

from critic_guard.store import schema
from critic_guard.store.dialect import POSTGRES
from critic_guard.store.ledger import Ledger
from critic_guard.store.sql_store import SQLStore
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

MIGRATIONS = schema.migrations(POSTGRES)
"""Schema versions in order (:mod:`critic_guard.store.schema`, spelled for PostgreSQL), numbered as SQLite's."""


def migrate(conn: _Conn) -> int:
    """Bring the schema (in the connection's ``search_path``) to the newest version and return it.

    One transaction under ``pg_advisory_xact_lock``: a second replica waits, then finds nothing left to do.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        return schema.upgrade(conn.execute, POSTGRES, MIGRATIONS)


class PostgresStore(SQLStore):
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
    def _session(self, *, transaction: bool) -> Iterator[Ledger]:
        """A pooled connection, in a transaction if asked or if the thread's wait is bounded: the statement timeout
        is set for that transaction only, so the pooled connection keeps its defaults. Row locks (``FOR UPDATE``,
        the dialect's) make the shared SQL's transactions atomic across replicas."""
        limit = self.wait_limit()
        with self._pool.connection(timeout=limit) as conn:  # None: the pool's own timeout_s

            def executemany(sql: str, rows: Sequence[Sequence[Any]]) -> None:
                with conn.cursor() as cursor:
                    cursor.executemany(sql, rows)

            ledger = Ledger(conn.execute, executemany, POSTGRES)
            if limit is None and not transaction:
                yield ledger
                return
            with conn.transaction():
                if limit is not None:
                    timeout = f"{max(1, round(limit * 1000))}ms"
                    conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
                yield ledger

    def close(self) -> None:
        if not self._closed:
            self._steps.close()
            self._closed = True
            self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.url)!r})"


def _redact(url: str) -> str:
    """The URL without its password, for logs and reprs."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable conninfo>"
    shown = {k: v for k, v in info.items() if k != "password"}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
