"""Opening the store a command names, and the one line that says why it could not (docs/report.md, "Command line:
output and exit codes"); shared by ``report``, ``status``, ``enable`` / ``disable`` and ``pilot``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from critic_guard.cli_errors import fail
from critic_guard.store.base import Store, open_store, parse_store_url

__all__ = ["open_cli_store", "store_label", "unreadable_store"]


def open_cli_store(url: str, *, create: bool = False) -> Store:
    """Open a store; unless ``create``, a missing SQLite file is an error, not a new database. Whatever stops it
    from opening (not a database, a directory, read-only, a newer schema, an unreachable server) is one line."""
    try:
        backend, target = parse_store_url(url)
    except ValueError as exc:
        fail(str(exc))
    if backend == "sqlite" and target != ":memory:":
        if Path(target).is_dir():
            fail(f"the SQLite store {target!r} is a directory, not a database file")
        if not create and not Path(target).is_file():
            fail(f"no SQLite store at {target!r}")
    try:
        with _quiet_pool_retries():
            store = open_store(url)
    except Exception as exc:  # e.g. sqlite3's "file is not a database", psycopg's OperationalError: one line
        fail(f"cannot open the store {store_label(url)}: {' '.join(str(exc).split())}")
    assert store is not None
    return store


@contextmanager
def _quiet_pool_retries() -> Iterator[None]:
    """psycopg's pool logs a warning per failed connection attempt while it retries; the one error line below says
    the same once, so those warnings are held back while the store opens."""
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool_log.setLevel(level)


def unreadable_store(url: str, exc: BaseException) -> str:
    """The one line for a store that opened but could not be read or written (e.g. corrupted pages)."""
    return f"cannot use the store {store_label(url)}: {' '.join(str(exc).split())}"


def store_label(url: str) -> str:
    """How the page names its store: the SQLite file's name, or PostgreSQL's host and database (never a password)."""
    backend, target = parse_store_url(url)
    if backend == "sqlite":
        return f"SQLite store {Path(target).name}"
    parts = urlsplit(target)
    return f"PostgreSQL store {parts.hostname or 'localhost'}{parts.path}"
