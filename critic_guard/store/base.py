"""The store interface: what the guard persists (runs, steps, outcomes) and how it is read back.

One interface, one module per backend (SQLite now, PostgreSQL later), and one shared test suite
(``tests/store_suite.py``) that every backend must pass, as LangGraph does for its checkpoint savers.

Records are frozen dataclasses with plain values (times are UNIX seconds as floats) so that a backend only has to
map columns. Backends must be safe to call from several threads at once: the guard is called from LangGraph worker
threads and from asyncio code.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from critic_guard.types import Action, Arm

__all__ = [
    "OutcomeConflictError",
    "OutcomeRecord",
    "RunRecord",
    "StepRecord",
    "Store",
    "UnknownRunError",
    "open_store",
    "parse_store_url",
]


class UnknownRunError(KeyError):
    """No run with this id is in the store."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0]) if self.args else "unknown run"


class OutcomeConflictError(ValueError):
    """An outcome was already recorded for this run with the other value."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of the agent on a task. ``parent_run_id``/``fork_step`` are set for a branch forked from a run."""

    run_id: str
    guard_key: str
    agent_name: str
    arm: Arm
    started_at: float
    task_id: str | None = None
    task: Mapping[str, Any] | None = None
    parent_run_id: str | None = None
    fork_step: int | None = None
    status: str = "running"
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One reviewed step: the verdict (None fields on critic error), the decision, and how long the critic took.

    ``attempt`` counts reviews of the same step index within a run (a ROLLBACK re-asks the model at the same step).
    """

    run_id: str
    step: int
    attempt: int
    p_fail: float | None
    label: str | None
    rationale: str | None
    flagged: bool
    action: Action
    reason: str
    critic_error: str | None
    latency_s: float
    created_at: float


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """Whether the run succeeded, as judged after it ended."""

    run_id: str
    success: bool
    recorded_at: float


class Store(ABC):
    """Persistence for the guard. Every method is thread-safe; writes are durable when they return."""

    @abstractmethod
    def add_run(self, run: RunRecord) -> bool:
        """Insert a run; False (and no change) if a run with this id exists already, so resuming is harmless."""

    @abstractmethod
    def end_run(self, run_id: str, *, status: str, ended_at: float) -> None:
        """Mark a run ended. Raises :class:`UnknownRunError` for an unknown id."""

    @abstractmethod
    def add_step(self, step: StepRecord) -> None:
        """Append one reviewed step (the hot path: must cost tens of microseconds, not milliseconds)."""

    @abstractmethod
    def record_outcome(self, run_id: str, success: bool, *, recorded_at: float) -> OutcomeRecord:
        """Record a run's outcome, idempotently: the same value again returns the first record unchanged.

        Raises :class:`UnknownRunError` for an unknown run, :class:`OutcomeConflictError` for the other value.
        """

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or :class:`UnknownRunError`."""

    @abstractmethod
    def steps_of(self, run_id: str) -> list[StepRecord]:
        """The run's steps in order of (step, attempt); empty for a run without steps."""

    @abstractmethod
    def get_outcome(self, run_id: str) -> OutcomeRecord | None:
        """The run's outcome, or None if none was recorded (unknown runs raise :class:`UnknownRunError`)."""

    @abstractmethod
    def runs(self, guard_key: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        """Runs in order of start (oldest first), optionally only those of one guard key, at most ``limit``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


def parse_store_url(url: str) -> tuple[str, str]:
    """Split a store URL into (backend, target) without opening anything; raise ``ValueError`` if malformed.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` and ``sqlite:///:memory:`` give a file path (as in
    SQLAlchemy); ``postgresql://...`` is passed to the PostgreSQL backend unchanged.
    """
    scheme, sep, rest = url.partition("://")
    backend = _SCHEMES.get(scheme.lower()) if sep else None
    if backend is None:
        raise ValueError(
            f"unsupported store URL {url!r}: expected 'sqlite:///path.db', 'sqlite:///:memory:' or "
            "'postgresql://user@host/db' (or None to persist nothing)"
        )
    if backend == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(
                f"SQLite store URL needs three slashes and a path, e.g. 'sqlite:///critic_guard.db'; got {url!r}"
            )
        return backend, rest[1:]
    return backend, url


def open_store(url: str | None) -> Store | None:
    """Open the backend a URL names (None persists nothing). The PostgreSQL backend is imported lazily."""
    if url is None:
        return None
    backend, target = parse_store_url(url)
    if backend == "sqlite":
        from critic_guard.store.sqlite import SQLiteStore

        return SQLiteStore(target)
    try:
        module = importlib.import_module("critic_guard.store.postgres")
    except ModuleNotFoundError as exc:
        if exc.name != "critic_guard.store.postgres":
            raise
        raise NotImplementedError(
            "the PostgreSQL store is not available in this version of critic-guard yet; use a 'sqlite:///' URL"
        ) from exc
    store: Store = module.PostgresStore(target)
    return store
