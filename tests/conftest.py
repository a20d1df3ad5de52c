"""Shared test set-up: print the versions that matter, since the resolver picks them per machine."""

from __future__ import annotations

from importlib import metadata

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
