"""Shared fixtures of the core tests (the versions tested are printed by the repository root's conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg_server import PostgresUnavailable, postgres_server
from support import skip_or_fail


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole test session (see tests/pg_server.py)."""
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        skip_or_fail(str(exc))
