"""Spans and events of a guarded run (docs/telemetry.md), through explicit handles rather than ``with`` blocks.

Why handles: a run starts in one framework hook and ends in another (LangGraph nodes, possibly on other threads), so a
run or step cannot be a context manager around code. ``GuardTelemetry.start_run`` returns a ``RunTrace``;
``RunTrace.start_step`` a ``StepTrace`` (both in critic_guard/telemetry/handles.py); each is ended explicitly. Our spans
are never made "current" behind the caller's back (a context token attached in one hook cannot be detached safely in
another); ``activate()`` makes a step current for the duration of a ``with`` block inside a single hook, e.g. around the
critic call, so the critic's own LLM spans (OpenInference, OpenLLMetry) nest under the step.

Trace shape:
- production run: span ``invoke_agent {agent}`` (kind INTERNAL), child of an explicit ``parent`` (OpenInference's
  span: it keeps its spans per LangChain run and does not make them current), else of whatever span is current
  when the run starts (OpenLLMetry's hook span, an application request span), else the root of a new trace;
- one child span ``critic_guard.step`` per judged step, holding the ``gen_ai.evaluation.result`` event of the
  critic's verdict and ``critic_guard.intervention`` / ``critic_guard.critic_error`` events;
- shadow run: always the root of its own trace, with a span link (and ``critic_guard.fork.*`` attributes, for
  backends that drop links) to the production step span it forked at; the production run records the shadow's
  trace id (``critic_guard.shadow.trace_id``) and a ``critic_guard.fork`` event.

Cost when no tracer provider is configured: the API hands out non-recording spans; attributes and events are only
computed after ``is_recording()`` says they will be kept (see benchmarks/telemetry_overhead.py).
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanKind

from critic_guard._version import __version__
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.content import ContentPolicy, Redactor
from critic_guard.telemetry.handles import Attrs, RunTrace, StepTrace, checked_cell, set_present
from critic_guard.telemetry.metrics import GuardMetrics
from critic_guard.telemetry.refs import SpanRef
from critic_guard.types import Arm, Mode

__all__ = ["GuardTelemetry", "RunTrace", "StepTrace"]


def _arm(value: Arm | str) -> str:
    try:
        return Arm(value).value
    except ValueError:
        raise ValueError(f"arm must be one of {[a.value for a in Arm]}, got {value!r}") from None


class GuardTelemetry:
    """Entry point: creates run traces and records guard-level events and metrics.

    ``tracer_provider`` / ``meter_provider`` default to the global ones (no-op until the application or
    ``configure_telemetry`` installs an SDK provider; a provider installed later is picked up, because the API's
    proxy tracer resolves it on first use). Content capture is off unless ``capture_content`` is True (None:
    follow ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``); ``redact`` is applied to every captured string.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(A.INSTRUMENTATION_SCOPE, __version__, tracer_provider)
        self.metrics = GuardMetrics(metrics.get_meter(A.INSTRUMENTATION_SCOPE, __version__, meter_provider))
        self.content = ContentPolicy(capture_content, redact)

    def start_run(
        self,
        run_id: str,
        agent_name: str,
        *,
        guard_key: str,
        arm: Arm | str,
        conversation_id: str | None = None,
        shadow: bool = False,
        link_to: SpanRef | str | None = None,
        parent: trace.Span | SpanRef | str | None = None,
        fork_checkpoint_id: str | None = None,
        fork_step: int | None = None,
        mode: Mode | str | None = None,
        provider_name: str | None = None,
    ) -> RunTrace:
        """Open the ``invoke_agent {agent}`` span of one run.

        A production run is parented under the current span if one is active, else starts a new trace. A shadow
        run (``shadow=True``) always starts a new trace; ``link_to`` is the production step span it forked at (a
        ``SpanRef`` or its ``traceparent`` string; None when the production run was not traced) and becomes a
        span link. The role is explicit, not inferred from ``link_to``, so metrics count a shadow run as one even
        when tracing is off and there is nothing to link to.

        ``parent`` overrides "the current span" for a production run: instrumentations that do not make their
        spans current inside framework hooks (OpenInference's LangChain tracer keeps them per callback run; the
        integration can fetch it with ``openinference.instrumentation.langchain.get_current_span()``) still get
        the run nested under their span.
        """
        if not run_id or not isinstance(run_id, str):
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        if not guard_key or not isinstance(guard_key, str):
            raise ValueError(f"guard_key must be a non-empty string, got {guard_key!r}")
        is_shadow = bool(shadow)
        if link_to is not None and not is_shadow:
            raise ValueError("link_to is the fork point of a shadow run; a production run cannot have one")
        if parent is not None and is_shadow:
            raise ValueError("a shadow run is the root of its own trace; it takes link_to, not parent")
        arm_value = _arm(arm)
        role = A.ROLE_SHADOW if is_shadow else A.ROLE_PRODUCTION
        attrs: Attrs = {
            A.GEN_AI_OPERATION_NAME: A.OPERATION_INVOKE_AGENT,
            A.GEN_AI_AGENT_NAME: agent_name,
            A.RUN_ID: run_id,
            A.GUARD_KEY: guard_key,
            A.ARM: arm_value,
            A.RUN_ROLE: role,
            A.OPENINFERENCE_SPAN_KIND: A.OPENINFERENCE_KIND_AGENT,
        }
        set_present(attrs, A.GEN_AI_CONVERSATION_ID, conversation_id)
        set_present(attrs, A.OPENINFERENCE_SESSION_ID, conversation_id)
        set_present(attrs, A.GEN_AI_PROVIDER_NAME, provider_name)
        set_present(attrs, A.MODE, Mode(mode).value if mode is not None else None)
        set_present(attrs, A.FORK_CHECKPOINT_ID, fork_checkpoint_id)
        set_present(attrs, A.FORK_STEP, fork_step)
        links: list[Link] = []
        context: otel_context.Context | None = None  # None: the current context (an outer span, if any)
        if parent is not None:
            outer = (
                parent
                if isinstance(parent, trace.Span)
                else trace.NonRecordingSpan(SpanRef.coerce(parent).span_context())
            )
            context = trace.set_span_in_context(outer, otel_context.Context())
        if is_shadow:
            context = otel_context.Context()  # empty context: the shadow branch is the root of its own trace
            if link_to is not None:
                target = SpanRef.coerce(link_to)
                link_attrs: Attrs = {A.LINK_TYPE: A.LINK_FORK}
                set_present(link_attrs, A.FORK_STEP, fork_step)
                links.append(Link(target.span_context(), link_attrs))
                attrs[A.FORK_TRACE_ID] = target.trace_id
                attrs[A.FORK_SPAN_ID] = target.span_id
        name = f"{A.SPAN_RUN_PREFIX} {agent_name}" if agent_name else A.SPAN_RUN_PREFIX
        span = self.tracer.start_span(name, context=context, kind=SpanKind.INTERNAL, attributes=attrs, links=links)
        return RunTrace(self, span, run_id=run_id, guard_key=guard_key, arm=arm_value, role=role,
                        fork_checkpoint_id=fork_checkpoint_id)  # fmt: skip

    def transition(
        self,
        guard_key: str,
        from_state: str,
        to_state: str,
        reason: str,
        *,
        on: RunTrace | StepTrace | None = None,
    ) -> None:
        """Record a lifecycle transition (docs/lifecycle.md) and update the lifecycle-state gauge.

        The event goes on ``on`` (default: the current span) when that span records, else on a short
        ``critic_guard.lifecycle`` span of its own (transitions often happen outside any run).
        """
        self.metrics.lifecycle(guard_key, to_state, previous=from_state)
        attrs: Attrs = {
            A.GUARD_KEY: guard_key,
            A.LIFECYCLE_FROM: from_state,
            A.LIFECYCLE_TO: to_state,
            A.LIFECYCLE_REASON: reason,
        }
        holder = on.span if on is not None else trace.get_current_span()
        if holder.is_recording():
            holder.add_event(A.EVENT_TRANSITION, attrs)
            return
        span = self.tracer.start_span(A.SPAN_LIFECYCLE, kind=SpanKind.INTERNAL, attributes=attrs)
        if span.is_recording():
            span.add_event(A.EVENT_TRANSITION, attrs)
        span.end()

    def monitor(
        self, guard_key: str, wealth: float, *, threshold: float | None = None, hypothesis: str = "harm"
    ) -> None:
        """Report the sequential monitor's wealth (and its rejection threshold 1/alpha) as gauges."""
        self.metrics.monitor(guard_key, hypothesis, float(wealth), None if threshold is None else float(threshold))

    def pair(self, guard_key: str, cell: str) -> None:
        """Count one completed pair in its cell (call once per pair, not once per arm)."""
        if cell not in A.PAIR_CELLS:
            raise ValueError(f"pair cell must be one of {A.PAIR_CELLS}, got {cell!r}")
        self.metrics.pair(guard_key, cell)

    def record_outcome(
        self,
        run: SpanRef | str | None,
        *,
        run_id: str,
        guard_key: str,
        arm: Arm | str,
        success: bool,
        cell: str | None = None,
    ) -> SpanRef | None:
        """Record an outcome that arrives after the run span ended (e.g. ``record_outcome(run_id, arm, ...)``).

        Emits a short ``critic_guard.outcome`` span in the run's own trace, as a child of the run span (by its
        ref, so this works from another process). Returns that span's ref; None (and no span) when ``run`` is
        None, i.e. the run itself was not traced.
        """
        attrs: Attrs = {
            A.RUN_ID: run_id,
            A.GUARD_KEY: guard_key,
            A.ARM: _arm(arm),
            A.OUTCOME_SUCCESS: bool(success),
        }
        set_present(attrs, A.PAIR_CELL, checked_cell(cell))
        if run is None:
            return None
        ref = SpanRef.coerce(run)
        parent = trace.set_span_in_context(trace.NonRecordingSpan(ref.span_context()), otel_context.Context())
        span = self.tracer.start_span(A.SPAN_OUTCOME, context=parent, kind=SpanKind.INTERNAL, attributes=attrs)
        if span.is_recording():
            span.add_event(A.EVENT_OUTCOME, attrs)
        out = SpanRef.from_span_context(span.get_span_context())
        span.end()
        return out
