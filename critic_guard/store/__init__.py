"""Persistence: the :class:`Store` interface and the protocols it joins, its records, and :func:`open_store` to pick
a backend by URL (docs/faults.md for how a store call waits and fails).

``PostgresStore`` lives in :mod:`critic_guard.store.postgres` (it needs the ``postgres`` extra, psycopg 3), so that
importing this package never imports psycopg.
"""

from critic_guard.store import base
from critic_guard.store.base import *  # noqa: F403 (the interface and its records, as listed in base.__all__)
from critic_guard.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore"]
__all__ += base.__all__
