"""Shared test set-up: print the versions that matter, since the resolver picks them per machine."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata

import pytest
from pg_server import PostgresUnavailable, postgres_server
from support import skip_or_fail

_REPORTED = (
    "critic-guard",
    "critic-guard-langgraph",
    "langchain",
    "langchain-core",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "numpy",
    "scipy",
    "pydantic",
    "opentelemetry-sdk",
    "psycopg",
)


def pytest_report_header() -> list[str]:
    versions = []
    for name in _REPORTED:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=absent")
    return ["versions: " + ", ".join(versions)]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole test session (see tests/pg_server.py)."""
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        skip_or_fail(str(exc))
