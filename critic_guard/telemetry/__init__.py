"""OpenTelemetry for critic-guard (docs/telemetry.md): spans, events and metrics of guarded runs.

- ``GuardTelemetry`` / ``RunTrace`` / ``StepTrace``: the handle API the guard and integrations call (API only,
  a no-op until a tracer / meter provider is configured).
- ``SpanRef``: a serialisable span id (``traceparent`` string) to link a shadow branch to its production run.
- ``configure_telemetry``: one call for a local OTLP/JSON lines file and OTLP/HTTP export (imports the SDK and
  protobuf, so it is loaded on first use, keeping ``import critic_guard`` light).
- ``render_traces``: the terminal view behind ``critic-guard traces FILE`` (also loaded on first use).
- ``attributes``: every name we emit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from critic_guard._lazy import lazy_getattr
from critic_guard.telemetry import attributes
from critic_guard.telemetry.refs import SpanRef
from critic_guard.telemetry.tracing import GuardTelemetry, RunTrace, StepTrace

if TYPE_CHECKING:
    from critic_guard.telemetry.setup import TelemetryHandles, configure_telemetry
    from critic_guard.telemetry.traceview import TraceSummary, render_traces

_LAZY = {
    "configure_telemetry": "critic_guard.telemetry.setup",
    "TelemetryHandles": "critic_guard.telemetry.setup",
    "render_traces": "critic_guard.telemetry.traceview",
    "TraceSummary": "critic_guard.telemetry.traceview",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "GuardTelemetry",
    "RunTrace",
    "SpanRef",
    "StepTrace",
    "TelemetryHandles",
    "TraceSummary",
    "attributes",
    "configure_telemetry",
    "render_traces",
]
