"""A human override of a guard's lifecycle state (``critic-guard enable|disable KEY --reason TEXT``): recorded in
the store as a transition with its reason, and traced when a trace file or an OTLP endpoint is configured.

The store's ``set_guard_state`` applies :func:`critic_guard.lifecycle.override` to the locked record, so the
override obeys the same rules as ``CriticGuard.set_state`` (refused for the current state, or against a standing
proof unless the monitor is reset) without needing the guard's critic or config.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from critic_guard.lifecycle import ACTOR_HUMAN, GuardRecord, GuardState, Transition, override
from critic_guard.report.data import choose_guard_key
from critic_guard.store.base import Store

__all__ = ["apply_override", "otlp_configured", "trace_transition"]


def apply_override(
    store: Store, guard_key: str, state: GuardState, *, reason: str, reset_monitor: bool = False
) -> Transition:
    """Set ``guard_key``'s state atomically and return the recorded transition.

    Raises :class:`~critic_guard.report.data.UnknownGuardKeyError` for a key the store does not have and
    :class:`~critic_guard.lifecycle.LifecycleError` when the lifecycle refuses the change.
    """
    choose_guard_key(store, guard_key)
    now = time.time()
    current = store.get_guard(guard_key)
    initial = current or GuardRecord.start(guard_key, now=now)

    def change(record: GuardRecord) -> tuple[GuardRecord, Transition]:
        return override(record, state, reason=reason, actor=ACTOR_HUMAN, reset_monitor=reset_monitor, now=now)

    _, transition = store.set_guard_state(guard_key, change, initial)
    return transition


def otlp_configured() -> bool:
    """Whether the standard OTLP endpoint variables ask for export (as ``configure_telemetry`` reads them)."""
    names = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(os.environ.get(name, "").strip() for name in names)


def trace_transition(transition: Transition, trace_file: Path | None) -> None:
    """Emit the transition event (a ``critic_guard.lifecycle`` span) to ``trace_file`` and/or OTLP, then flush."""
    from critic_guard.telemetry.setup import configure_telemetry  # the OTel SDK loads only when tracing is asked

    handles = configure_telemetry(file=trace_file, metrics_to_file=False, set_global=False)
    try:
        handles.telemetry.transition(
            transition.guard_key, transition.from_state.value, transition.to_state.value, transition.reason
        )
    finally:
        handles.shutdown()
