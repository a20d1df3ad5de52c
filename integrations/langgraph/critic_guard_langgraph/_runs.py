"""What the middleware and the graph wrapper share: fail-open calls into the guard, run arms, task metadata.

Fail open, but never swallow LangGraph control flow: ``GraphBubbleUp`` (``interrupt()``, ``Command`` to a parent
graph) must reach LangGraph, so every ``except Exception`` here re-raises it first.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.errors import GraphBubbleUp
from pydantic import BaseModel

from critic_guard.guard import CriticGuard, StepReview
from critic_guard.types import Action, Arm, Mode, StepContext
from critic_guard_langgraph.messages import is_guard_note

logger = logging.getLogger("critic_guard_langgraph")

T = TypeVar("T")


def is_off(guard: CriticGuard) -> bool:
    """Mode ``off``: the integration does nothing at all (no critic call, no store write, no message)."""
    return guard.config.mode is Mode.OFF


def run_arm(guard: CriticGuard, arm: Arm | None) -> Arm:
    """The arm of a new user-facing run: the caller's choice, else the arm the guard serves now.

    That is treatment in mode ``on``, control in ``off`` / ``observe``, ``config.serve`` during a pilot (control by
    default: users are not exposed to an unproven intervention) and the lifecycle's choice in ``auto``.
    """
    return Arm(arm) if arm is not None else guard.serve_arm()


def instrumentation_parent() -> Any:
    """The span of an instrumentation that does not make its spans current inside middleware hooks, or None.

    OpenInference's LangChain tracer keeps its spans per callback run; its ``get_current_span()`` gives the span
    of the chain being run, under which the guard's run span should nest. Looked up only when the user has
    imported OpenInference (no import here, so no cost otherwise).
    """
    module = sys.modules.get("openinference.instrumentation.langchain")
    getter = getattr(module, "get_current_span", None)
    if getter is None:
        return None
    span = getter()
    return span if span is not None and span.is_recording() else None


def task_metadata(messages: Sequence[BaseMessage], context: object) -> dict[str, Any]:
    """Task metadata for a new run: its input (:func:`run_input`) and the runtime context's fields."""
    return {**run_input(messages), **context_fields(context)}


def run_input(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """``{"input": text}`` of the run's first user message, or ``{}``.

    The run's first user message is the first non-note user message after the last assistant message (in a
    multi-turn thread the earlier turns belong to earlier runs).
    """
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], AIMessage):
            start = i + 1
            break
    for message in messages[start:]:
        if isinstance(message, HumanMessage) and not is_guard_note(message):
            return {"input": message.text}
    return {}


def context_fields(context: object) -> dict[str, Any]:
    """The fields of LangGraph's ``runtime.context`` when it is a mapping, a dataclass instance or a pydantic model.

    Kept in process only: a context often holds credentials (an ``api_key``), so the middleware never puts it in
    the graph state (the checkpoint), and the guard's store keeps only the fields allowed at rest
    (docs/telemetry.md, "What the store keeps").
    """
    if isinstance(context, Mapping):
        return dict(context)
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        # shallow: ``asdict`` deep-copies every field, and a context often holds live objects (an environment, a
        # connection, a lock) that must not be copied, or cannot be; the store keeps non-JSON values as their str
        return {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    if isinstance(context, BaseModel):
        return context.model_dump(mode="json")
    return {}


def safely(what: str, fn: Callable[..., T], *args: Any, default: T, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or ``default`` (logged) if it raises anything but LangGraph control flow."""
    try:
        return fn(*args, **kwargs)
    except GraphBubbleUp:
        raise
    except Exception:
        logger.exception("critic-guard: %s failed; the run continues unguarded for this step", what)
        return default


async def asafely(what: str, fn: Callable[..., Awaitable[T]], *args: Any, default: T, **kwargs: Any) -> T:
    """Async :func:`safely`."""
    try:
        return await fn(*args, **kwargs)
    except GraphBubbleUp:
        raise
    except Exception:
        logger.exception("critic-guard: %s failed; the run continues unguarded for this step", what)
        return default


def review_or_none(guard: CriticGuard, ctx: StepContext, interventions: int, last: int | None) -> StepReview | None:
    return safely("review", guard.review, ctx, interventions=interventions, last_intervention_step=last, default=None)


async def areview_or_none(
    guard: CriticGuard, ctx: StepContext, interventions: int, last: int | None
) -> StepReview | None:
    return await asafely(
        "review", guard.areview, ctx, interventions=interventions, last_intervention_step=last, default=None
    )


def action_of(review: StepReview | None) -> Action:
    return Action.NONE if review is None else review.action
