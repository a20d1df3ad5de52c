"""Clone one LangGraph checkpoint into a new thread: the fork point of a counterfactual shadow branch.

Why (docs/pilot-design.md, "Why fork at the first flag"): a shadow branch must never run inside the production thread
(that would move its head), and the savers do not implement ``copy_thread``. So the checkpoint is copied by hand:
``put`` the checkpoint (with its metadata and channel versions) under a new thread id, then ``put_writes`` its pending
writes, one call per task id (a saver stores writes per task). Invoking the graph with ``None`` input on the new thread
resumes exactly where the source checkpoint stood: the tasks whose writes were copied are not run again, the others are.

``skip_task_ids`` leaves out the writes of tasks the branch must run again itself. The fork point of a pilot is
the checkpoint the flagged step's model node runs from; by the time a background branch clones it, production's
model node has usually finished and its writes (production's accepted proposal, its record, its routing) sit
among the checkpoint's pending writes. The branch must take that step for itself, so that task's writes are
skipped.

Under LangGraph's default ``durability="async"`` a checkpoint is written in the background while the next step
runs, so the source may not be readable yet when a hook asks for it: both functions poll, with a bounded wait.
``durability="exit"`` writes nothing until the run ends, so there is no fork point to clone; callers refuse it
(:func:`check_durability`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

__all__ = ["DEFAULT_WAIT_S", "ForkError", "aclone_checkpoint", "check_durability", "clone_checkpoint"]

DEFAULT_WAIT_S = 5.0
"""How long to wait for the source checkpoint to be persisted (``durability="async"`` writes it in background)."""

_DURABILITY_KEY = "__pregel_durability"  # where LangGraph puts the run's durability in a node's config


class ForkError(RuntimeError):
    """The fork point cannot be cloned (missing checkpoint, bad config, unsupported durability)."""


def check_durability(config: Mapping[str, Any] | None) -> None:
    """Refuse ``durability="exit"``: its checkpoints exist only after the run ends, so nothing can fork from them.

    ``config`` is the config a node runs with (``langgraph.config.get_config()``).
    """
    durability = ((config or {}).get("configurable") or {}).get(_DURABILITY_KEY)
    if durability == "exit":
        raise ForkError(
            'counterfactual forks need the fork-point checkpoint while the run goes on; durability="exit" writes '
            'checkpoints only when the run ends: invoke with durability="async" (the default) or "sync"'
        )


def _source(source_config: RunnableConfig) -> tuple[str, str]:
    conf = source_config.get("configurable") or {}
    thread_id, checkpoint_id = conf.get("thread_id"), conf.get("checkpoint_id")
    if not thread_id or not checkpoint_id:
        raise ForkError(
            "source_config must name the checkpoint to clone: "
            f"{{'configurable': {{'thread_id': ..., 'checkpoint_id': ...}}}}, got {dict(conf)!r}"
        )
    if conf.get("checkpoint_ns", ""):
        raise ForkError(
            f"cannot fork inside a subgraph (checkpoint_ns={conf['checkpoint_ns']!r}): only a top-level graph's "
            "checkpoint can be resumed on its own thread"
        )
    return str(thread_id), str(checkpoint_id)


def _target(thread_id: str, new_thread_id: str) -> RunnableConfig:
    if not new_thread_id or new_thread_id == thread_id:
        raise ForkError(f"the clone needs a new thread id, different from the source's ({thread_id!r})")
    return {"configurable": {"thread_id": new_thread_id, "checkpoint_ns": ""}}


def _lookup(thread_id: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}


def _missing(thread_id: str, checkpoint_id: str, wait_s: float) -> ForkError:
    return ForkError(
        f"checkpoint {checkpoint_id!r} of thread {thread_id!r} was not found within {wait_s:g} s "
        '(was the run invoked with durability="exit", or with another checkpointer?)'
    )


def _writes_by_task(tup: CheckpointTuple, skip_task_ids: Collection[str]) -> dict[str, list[tuple[str, Any]]]:
    grouped: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for task_id, channel, value in tup.pending_writes or ():
        if task_id not in skip_task_ids:
            grouped[task_id].append((channel, value))
    return grouped


def _delays(wait_s: float) -> Sequence[float]:
    """Polling delays: fast at first (the checkpoint is usually a few ms behind), then capped at 50 ms."""
    delays, total, delay = [], 0.0, 0.001
    while total < wait_s:
        delays.append(min(delay, wait_s - total))
        total += delays[-1]
        delay = min(delay * 2, 0.05)
    return delays


def clone_checkpoint(
    saver: BaseCheckpointSaver[Any],
    source_config: RunnableConfig,
    new_thread_id: str,
    *,
    skip_task_ids: Collection[str] = (),
    wait_s: float = DEFAULT_WAIT_S,
) -> RunnableConfig:
    """Copy the checkpoint ``source_config`` names (and its pending writes) to ``new_thread_id``.

    Returns the new checkpoint's config; ``graph.invoke(None, {"configurable": {"thread_id": new_thread_id}})``
    resumes from it. The source thread is only read. Raises :class:`ForkError` if the checkpoint does not appear
    within ``wait_s`` seconds or the config is unusable.
    """
    thread_id, checkpoint_id = _source(source_config)
    target = _target(thread_id, new_thread_id)
    lookup = _lookup(thread_id, checkpoint_id)
    tup = saver.get_tuple(lookup)
    for delay in _delays(wait_s) if tup is None else ():
        time.sleep(delay)
        if (tup := saver.get_tuple(lookup)) is not None:
            break
    if tup is None:
        raise _missing(thread_id, checkpoint_id, wait_s)
    new_config = saver.put(target, tup.checkpoint, tup.metadata, tup.checkpoint["channel_versions"])
    for task_id, writes in _writes_by_task(tup, skip_task_ids).items():
        saver.put_writes(new_config, writes, task_id)
    return new_config


async def aclone_checkpoint(
    saver: BaseCheckpointSaver[Any],
    source_config: RunnableConfig,
    new_thread_id: str,
    *,
    skip_task_ids: Collection[str] = (),
    wait_s: float = DEFAULT_WAIT_S,
) -> RunnableConfig:
    """Async :func:`clone_checkpoint` (``aget_tuple`` / ``aput`` / ``aput_writes``)."""
    thread_id, checkpoint_id = _source(source_config)
    target = _target(thread_id, new_thread_id)
    lookup = _lookup(thread_id, checkpoint_id)
    tup = await saver.aget_tuple(lookup)
    for delay in _delays(wait_s) if tup is None else ():
        await asyncio.sleep(delay)
        if (tup := await saver.aget_tuple(lookup)) is not None:
            break
    if tup is None:
        raise _missing(thread_id, checkpoint_id, wait_s)
    new_config = await saver.aput(target, tup.checkpoint, tup.metadata, tup.checkpoint["channel_versions"])
    for task_id, writes in _writes_by_task(tup, skip_task_ids).items():
        await saver.aput_writes(new_config, writes, task_id)
    return new_config
