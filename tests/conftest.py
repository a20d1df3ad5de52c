"""Shared test set-up: print the versions that matter, since the resolver picks them per machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import metadata

import pytest
from pg_server import PostgresUnavailable, postgres_server

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


def require_or_skip(reason: str) -> None:
    """Skip locally with a clear reason; in CI a missing real component is a failure, not a skip."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole test session (see tests/pg_server.py)."""
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        require_or_skip(str(exc))
