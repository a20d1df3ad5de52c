"""Helpers shared by test modules (importable by name, unlike the two ``conftest`` modules of a full run)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

import pytest

from critic_guard.types import StepContext, Verdict


def in_ci() -> bool:
    """CI sets ``CI=true``; there, a missing real component (PostgreSQL, Phoenix, an environment) is a failure."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip locally with a clear reason; in CI a missing real component fails the test instead."""
    if in_ci():
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


T = TypeVar("T")


def serve_or_skip(server: AbstractContextManager[T], unavailable: type[Exception]) -> Iterator[T]:
    """The body of a fixture around a real component: ``yield from serve_or_skip(postgres_server(),
    PostgresUnavailable)`` yields what ``server`` gives, and stops it after the tests; if the component cannot start
    here (``unavailable``), the tests skip locally and fail in CI (:func:`skip_or_fail`)."""
    try:
        with server as value:
            yield value
    except unavailable as exc:
        skip_or_fail(str(exc))


class StubbornCritic:
    """A native-async critic that flags every step (0.9) but answers only after ``release``, ignoring its deadline:
    ``swallow`` catches the cancellation and waits on; ``block`` blocks its event loop (``threading.Event.wait``
    inside ``async def``). ``started`` / ``finished`` count its calls, so a test can show a step went on while the
    critic was still busy. Tests of the guard's and the middleware's critic deadlines share it."""

    native_async = True

    def __init__(self, how: str, release: threading.Event) -> None:
        self.name = f"stubborn-{how}@1"
        self.how = how
        self.release = release
        self.started = 0
        self.finished = 0

    def judge(self, ctx: StepContext) -> Verdict:
        raise AssertionError("a stubborn critic is only called through ajudge")

    async def ajudge(self, ctx: StepContext) -> Verdict:
        self.started += 1
        if self.how == "block":
            self.release.wait(30)
        else:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                while not self.release.is_set():  # ignores the cancellation
                    await asyncio.sleep(0.005)
        self.finished += 1
        return Verdict(0.9, rationale="too late to matter")
