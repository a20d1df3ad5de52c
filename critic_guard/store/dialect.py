"""How the SQLite and PostgreSQL backends spell the same SQL: placeholders, row locks, column types, insertion order.

Why a dialect object and not two copies of the SQL: every statement of the store is written once
(:mod:`critic_guard.store.ledger`, :mod:`critic_guard.store.run_log`, :mod:`critic_guard.store.pilot_tasks`,
:mod:`critic_guard.store.schema`) with ``?`` placeholders and portable syntax (``INSERT ... ON CONFLICT DO NOTHING``
runs on both), so the backends cannot drift apart; what really differs between the two databases is named here, in
one place. The shared suite (``tests/store_suite.py``) runs against both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

__all__ = ["POSTGRES", "SQLITE", "Dialect", "spell"]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL.

    ``lock`` is the suffix that locks a selected row for the transaction (SQLite needs none: ``BEGIN IMMEDIATE``
    holds the database write lock). ``insertion_order`` is the column that orders rows as inserted: SQLite's implicit
    ``rowid``, or a serial column of that name that the schema adds to ``runs``. ``no_limit`` is the ``LIMIT`` value
    that means all rows. ``types`` names the column types of the schema (:mod:`critic_guard.store.schema`).
    """

    name: str
    placeholder: str
    lock: str
    insertion_order: str
    no_limit: int | None
    types: Mapping[str, str]


_TYPES = {  # the schema's column types, side by side: (SQLite, PostgreSQL)
    "real": ("REAL", "DOUBLE PRECISION"),
    "boolean": ("INTEGER", "BOOLEAN"),
    "json": ("TEXT", "JSONB"),
    "bigint": ("INTEGER", "BIGINT"),
    "serial_key": ("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY"),  # auto-numbered
}


def _types(column: int) -> Mapping[str, str]:
    return MappingProxyType({name: spelled[column] for name, spelled in _TYPES.items()})


SQLITE = Dialect("sqlite", "?", lock="", insertion_order="rowid", no_limit=-1, types=_types(0))
POSTGRES = Dialect("postgres", "%s", lock=" FOR UPDATE", insertion_order="seq", no_limit=None, types=_types(1))


@cache
def spell(sql: str, placeholder: str) -> str:
    """``sql`` (written with ``?`` placeholders) in a dialect's placeholder style."""
    return sql if placeholder == "?" else sql.replace("?", placeholder)
