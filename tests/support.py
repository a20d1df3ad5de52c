"""Helpers shared by test modules (importable by name, unlike the two ``conftest`` modules of a full run)."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """CI sets ``CI=true``; there, a missing real component (PostgreSQL, Phoenix, an environment) is a failure."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally with a clear reason; in CI a missing real component fails the test instead."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
