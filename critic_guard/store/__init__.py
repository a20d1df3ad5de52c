"""Persistence: the :class:`Store` interface, its records, and :func:`open_store` to pick a backend by URL.

``PostgresStore`` lives in :mod:`critic_guard.store.postgres` (it needs the ``postgres`` extra, psycopg 3), so that
importing this package never imports psycopg.
"""

from critic_guard.store.base import (
    ApplyPair,
    ChangeState,
    OutcomeConflictError,
    OutcomeRecord,
    PairConflictError,
    PairDesign,
    PairKind,
    PairRecord,
    PairStateError,
    PairStatus,
    PairUpdate,
    PilotTaskRecord,
    PilotTaskStatus,
    RunEnd,
    RunRecord,
    RunSummary,
    StepRecord,
    Store,
    StoreBusyError,
    UnknownPairError,
    UnknownRunError,
    open_store,
    parse_store_url,
)
from critic_guard.store.sqlite import SQLiteStore

__all__ = [
    "ApplyPair",
    "ChangeState",
    "OutcomeConflictError",
    "OutcomeRecord",
    "PairConflictError",
    "PairDesign",
    "PairKind",
    "PairRecord",
    "PairStateError",
    "PairStatus",
    "PairUpdate",
    "PilotTaskRecord",
    "PilotTaskStatus",
    "RunEnd",
    "RunRecord",
    "RunSummary",
    "SQLiteStore",
    "StepRecord",
    "Store",
    "StoreBusyError",
    "UnknownPairError",
    "UnknownRunError",
    "open_store",
    "parse_store_url",
]
