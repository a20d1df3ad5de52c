"""How the SQLite and PostgreSQL backends spell the same SQL: placeholders, row locks, column types, insertion order.

Why a dialect object and not two copies of the SQL: every statement of the store is written once
(:mod:`critic_guard.store.ledger`, :mod:`critic_guard.store.run_log`, :mod:`critic_guard.store.pilot_tasks`,
:mod:`critic_guard.store.schema`) with ``?`` placeholders and portable syntax (``INSERT ... ON CONFLICT DO NOTHING``
runs on both), so the backends cannot drift apart; what really differs between the two databases is named here, in
one place. The shared suite (``tests/store_suite.py``) runs against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

__all__ = ["POSTGRES", "SQLITE", "Dialect", "spell"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL.

    ``lock`` is the suffix that locks a selected row for the transaction (SQLite needs none: ``BEGIN IMMEDIATE``
    holds the database write lock). ``insertion_order`` is the column that orders rows as inserted (SQLite's
    ``rowid``, PostgreSQL's ``seq`` serial), ``no_limit`` the ``LIMIT`` value that means all rows. The type names
    are those of the schema (:mod:`critic_guard.store.schema`); ``run_seq`` is the column PostgreSQL adds to
    ``runs`` for ``insertion_order``.
    """

    name: str
    placeholder: str
    lock: str
    insertion_order: str
    no_limit: int | None
    real: str
    boolean: str
    json: str
    bigint: str
    serial_key: str
    run_seq: str


SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    lock="",
    insertion_order="rowid",
    no_limit=-1,
    real="REAL",
    boolean="INTEGER",
    json="TEXT",
    bigint="INTEGER",
    serial_key="INTEGER PRIMARY KEY",
    run_seq="",
)
POSTGRES = Dialect(
    name="postgres",
    placeholder="%s",
    lock=" FOR UPDATE",
    insertion_order="seq",
    no_limit=None,
    real="DOUBLE PRECISION",
    boolean="BOOLEAN",
    json="JSONB",
    bigint="BIGINT",
    serial_key="BIGSERIAL PRIMARY KEY",
    run_seq="seq BIGSERIAL NOT NULL,",
)


@cache
def spell(sql: str, placeholder: str) -> str:
    """``sql`` (written with ``?`` placeholders) in a dialect's placeholder style."""
    return sql if placeholder == "?" else sql.replace("?", placeholder)
