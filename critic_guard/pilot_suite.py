"""What ``critic-guard pilot module:function`` runs: a :class:`PilotSuite` (tasks, the critic and policy under test,
the framework adapter) and how it is loaded (:func:`load_suite`).

Why apart from the runner (critic_guard/pilot.py): a suite is what a user writes, the runner is how it is run;
users import both from :mod:`critic_guard.pilot`, which re-exports these names.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from critic_guard.at_rest import ATTEMPT_KEY
from critic_guard.critics import Critic
from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store.base import Store

__all__ = ["AdapterFactory", "PilotAdapter", "PilotSuite", "PilotTask", "SuiteError", "load_suite"]

_RESERVED_OPTIONS = frozenset({"mode", "store", "policy"})


class SuiteError(ValueError):
    """A suite entry point that cannot be loaded or does not return a valid :class:`PilotSuite`."""


@dataclass(frozen=True, slots=True)
class PilotTask:
    """One attempt at one task, as the adapter sees it."""

    task_id: str
    attempt_id: str
    data: Mapping[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        """What the runs of this attempt must record as their task (``guard.start_run(task=...)``): the task's
        fields, its ``task_id`` and the attempt id. A resumed pilot finds an interrupted attempt's runs by it."""
        return {**self.data, "task_id": self.task_id, ATTEMPT_KEY: self.attempt_id}


class PilotAdapter(Protocol):
    """The framework side of a pilot."""

    async def run_task(self, task: PilotTask) -> None:
        """Run the task's production run to its end (judged, so its outcome is recorded) and await its shadow
        branch, if it forked one. Every run must carry ``task.metadata`` as its task."""
        ...


AdapterFactory = Callable[[CriticGuard], AbstractAsyncContextManager[PilotAdapter]]
"""``factory(guard)`` -> an async context manager that yields the adapter (and cleans up after the pilot)."""


@dataclass(frozen=True)
class PilotSuite:
    """What ``critic-guard pilot module:function`` runs: tasks, the critic and policy under test, the agent.

    ``tasks``: mappings with a unique ``task_id`` (or ``id``) and whatever the adapter needs (e.g. ``input``).
    ``adapter``: builds the framework adapter for a guard (it holds the agent factory and the judge).
    ``guard_options``: other :class:`~critic_guard.config.GuardConfig` fields (``agent_name`` defaults to
    ``name``; ``mode``, ``store`` and ``policy`` come from the command line and the suite's ``policy``).
    """

    name: str
    tasks: Sequence[Mapping[str, Any]]
    critic: Critic | Callable[..., Any]
    adapter: AdapterFactory
    policy: Policy = field(default_factory=Policy)
    guard_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name != self.name.strip():
            raise SuiteError(f"suite name must be non-empty, without '/' or surrounding spaces: {self.name!r}")
        tasks = tuple(self.tasks)
        if not tasks:
            raise SuiteError(f"suite {self.name!r} has no tasks")
        seen: set[str] = set()
        for i, task in enumerate(tasks):
            if not isinstance(task, Mapping):
                raise SuiteError(f"suite {self.name!r}: task {i} is a {type(task).__name__}, not a mapping")
            task_id = task.get("task_id", task.get("id"))
            if task_id is None:
                raise SuiteError(f"suite {self.name!r}: task {i} has no 'task_id'")
            if str(task_id) in seen:
                raise SuiteError(f"suite {self.name!r}: task id {task_id!r} appears twice")
            seen.add(str(task_id))
        reserved = sorted(_RESERVED_OPTIONS & set(self.guard_options))
        if reserved:
            raise SuiteError(f"suite {self.name!r}: guard_options may not set {', '.join(reserved)}")
        if not callable(self.adapter):
            raise SuiteError(f"suite {self.name!r}: adapter must be callable (guard -> async context manager)")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "guard_options", MappingProxyType(dict(self.guard_options)))

    def task_ids(self) -> list[str]:
        return [str(task.get("task_id", task.get("id"))) for task in self.tasks]

    def guard(self, *, mode: str, store: str | Store | None, **overrides: Any) -> CriticGuard:
        """A guard for this suite (agent name, critic, policy, options) in ``mode`` on ``store``."""
        options = {"agent_name": self.name, **self.guard_options, **overrides}
        return CriticGuard(self.critic, mode=mode, policy=self.policy, store=store, **options)


def load_suite(spec: str, *, seed: int | None = None) -> PilotSuite:
    """Import ``module:function`` and call it (with ``seed=`` if it takes one) to get the suite.

    The current directory is importable, as for ``python -m``: a suite beside the project just works.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SuiteError(f"suite must be given as 'module:function', got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SuiteError(f"cannot import suite module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SuiteError(f"module {module_name!r} has no callable {attr!r}")
    takes_seed = "seed" in inspect.signature(factory).parameters
    suite = factory(seed=seed) if takes_seed and seed is not None else factory()
    if not isinstance(suite, PilotSuite):
        raise SuiteError(f"{spec} returned a {type(suite).__name__}, not a critic_guard.pilot.PilotSuite")
    return suite
