"""Persistence: the :class:`Store` interface, its records, and :func:`open_store` to pick a backend by URL."""

from critic_guard.store.base import (
    OutcomeConflictError,
    OutcomeRecord,
    RunRecord,
    StepRecord,
    Store,
    UnknownRunError,
    open_store,
    parse_store_url,
)
from critic_guard.store.sqlite import SQLiteStore

__all__ = [
    "OutcomeConflictError",
    "OutcomeRecord",
    "RunRecord",
    "SQLiteStore",
    "StepRecord",
    "Store",
    "UnknownRunError",
    "open_store",
    "parse_store_url",
]
