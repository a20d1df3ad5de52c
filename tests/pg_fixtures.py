"""The PostgreSQL fixtures every test directory shares: one server per session, a fresh schema per test.

Why one place: the store, report, pilot and content-at-rest tests each need a real server (tests/pg_server.py) and
a schema of their own; the repository's root conftest.py registers these fixtures for tests/ and the integration's
tests alike, so a session starts at most one server, and only when a test asks for it. A test that stops its
server (the outage test) starts its own cluster and takes a schema on it with :func:`fresh_schema`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.pg_server import PostgresUnavailable, postgres_server
from tests.support import serve_or_skip


@contextmanager
def fresh_schema(server_url: str, prefix: str = "cg") -> Iterator[str]:
    """A new, empty schema on ``server_url``, named ``{prefix}_<random>``: yields a URL whose ``search_path`` is that
    schema (the store's and a checkpointer's tables land in it), and drops the schema with everything in it on exit."""
    import psycopg  # the postgres extra: only tests that ask for a server need it
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield schema_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def schema_url(server_url: str, schema: str) -> str:
    """The URL of ``server_url`` with ``schema`` as its ``search_path``."""
    return f"{server_url}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole test session (tests/pg_server.py): skipped locally without the
    binaries, a failure in CI."""
    yield from serve_or_skip(postgres_server(), PostgresUnavailable)


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh schema on the session's server for one test (:func:`fresh_schema`), dropped afterwards."""
    with fresh_schema(postgres_url) as url:
        yield url
