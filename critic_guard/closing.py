"""Closing a guard: a ``with`` block closes it (:class:`Closing`), after the integrations' background work
(:class:`Drains`: verdicts judged off the user's path and their shadow branches, which still need the critic pool
and the store, docs/faults.md)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

__all__ = ["Closing", "Drains"]

logger = logging.getLogger("critic_guard")


class Closing(ABC):
    """``with x:`` closes ``x`` on leaving, whether the block raised or not (the error goes on)."""

    @abstractmethod
    def close(self) -> None:
        """Release what this holds. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Drains:
    """Background work to finish before closing: each a sync ``drain`` and, for async callers, an ``adrain``.

    A drain that fails is logged and the others still run: closing must go on.
    """

    def __init__(self) -> None:
        self._drains: list[tuple[Callable[[], object], Callable[[], Awaitable[object]] | None]] = []

    def add(self, drain: Callable[[], object], adrain: Callable[[], Awaitable[object]] | None) -> None:
        self._drains.append((drain, adrain))

    def run(self) -> None:
        for drain, _ in tuple(self._drains):
            try:
                drain()
            except Exception:
                logger.exception("critic-guard: finishing background work at close failed")

    async def arun(self) -> None:
        for _, adrain in tuple(self._drains):
            if adrain is None:
                continue
            try:
                await adrain()
            except Exception:
                logger.exception("critic-guard: finishing background work at close failed")
