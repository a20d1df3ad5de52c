"""Spans and events of a guarded run (docs/telemetry.md), through explicit handles rather than ``with`` blocks.

Why handles: a run starts in one framework hook and ends in another (LangGraph nodes, possibly on other threads),
so a run or step cannot be a context manager around code. ``GuardTelemetry.start_run`` returns a ``RunTrace``;
``RunTrace.start_step`` a ``StepTrace``; each is ended explicitly. Our spans are never made "current" behind the
caller's back (a context token attached in one hook cannot be detached safely in another); ``activate()`` makes
a step current for the duration of a ``with`` block inside a single hook, e.g. around the critic call, so the
critic's own LLM spans (OpenInference, OpenLLMetry) nest under the step.

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

import threading
from contextlib import AbstractContextManager

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from critic_guard._version import __version__
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.content import ContentPolicy, Redactor
from critic_guard.telemetry.metrics import GuardMetrics
from critic_guard.telemetry.refs import SpanRef
from critic_guard.types import Action, Arm, Message, Mode, Verdict

_Attrs = dict[str, AttributeValue]


def _arm(value: Arm | str) -> str:
    try:
        return Arm(value).value
    except ValueError:
        raise ValueError(f"arm must be one of {[a.value for a in Arm]}, got {value!r}") from None


def _cell(value: str | None) -> str | None:
    if value is not None and value not in A.PAIR_CELLS:
        raise ValueError(f"pair cell must be one of {A.PAIR_CELLS}, got {value!r}")
    return value


def _error_type(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        return type(error).__qualname__
    if not isinstance(error, str) or not error:
        raise ValueError(f"error must be an exception or a non-empty error type string, got {error!r}")
    return error


def _set_present(target: _Attrs, key: str, value: AttributeValue | None) -> None:
    if value is not None:
        target[key] = value


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
        attrs: _Attrs = {
            A.GEN_AI_OPERATION_NAME: A.OPERATION_INVOKE_AGENT,
            A.GEN_AI_AGENT_NAME: agent_name,
            A.RUN_ID: run_id,
            A.GUARD_KEY: guard_key,
            A.ARM: arm_value,
            A.RUN_ROLE: role,
            A.OPENINFERENCE_SPAN_KIND: A.OPENINFERENCE_KIND_AGENT,
        }
        _set_present(attrs, A.GEN_AI_CONVERSATION_ID, conversation_id)
        _set_present(attrs, A.OPENINFERENCE_SESSION_ID, conversation_id)
        _set_present(attrs, A.GEN_AI_PROVIDER_NAME, provider_name)
        _set_present(attrs, A.MODE, Mode(mode).value if mode is not None else None)
        _set_present(attrs, A.FORK_CHECKPOINT_ID, fork_checkpoint_id)
        _set_present(attrs, A.FORK_STEP, fork_step)
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
                link_attrs: _Attrs = {A.LINK_TYPE: A.LINK_FORK}
                _set_present(link_attrs, A.FORK_STEP, fork_step)
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
        attrs: _Attrs = {
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
        attrs: _Attrs = {
            A.RUN_ID: run_id,
            A.GUARD_KEY: guard_key,
            A.ARM: _arm(arm),
            A.OUTCOME_SUCCESS: bool(success),
        }
        _set_present(attrs, A.PAIR_CELL, _cell(cell))
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


class _Handle:
    """What runs and steps share: a span that is ended once, and a ``with`` helper to make it current."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._ended = False
        self._lock = threading.Lock()

    @property
    def ref(self) -> SpanRef | None:
        """Serialisable id of this span (store ``str(ref)`` in graph state); None when tracing is off."""
        return SpanRef.from_span_context(self.span.get_span_context())

    @property
    def is_recording(self) -> bool:
        return self.span.is_recording()

    @property
    def ended(self) -> bool:
        return self._ended

    def activate(self) -> AbstractContextManager[trace.Span]:
        """Make this span current inside a ``with`` block in one hook (e.g. around the critic call)."""
        return trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def _claim_end(self) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            return True


class RunTrace(_Handle):
    """The span of one run. Create with ``GuardTelemetry.start_run``; end with ``end()`` (idempotent)."""

    def __init__(
        self,
        telemetry: GuardTelemetry,
        span: trace.Span,
        *,
        run_id: str,
        guard_key: str,
        arm: str,
        role: str,
        fork_checkpoint_id: str | None,
    ) -> None:
        super().__init__(span)
        self.telemetry = telemetry
        self.run_id = run_id
        self.guard_key = guard_key
        self.arm = arm
        self.role = role
        self.fork_checkpoint_id = fork_checkpoint_id
        self.cell: str | None = None
        self.interventions = 0
        self._open_steps: set[StepTrace] = set()
        self.metric_attrs: dict[str, str] = {A.GUARD_KEY: guard_key, A.ARM: arm, A.RUN_ROLE: role}
        self._verdict_attrs: dict[str, dict[str, str]] = {}

    def verdict_metric_attrs(self, critic: str) -> dict[str, str]:
        """Metric attributes of a verdict by ``critic`` (cached: built once per critic, not once per step)."""
        attrs = self._verdict_attrs.get(critic)
        if attrs is None:
            attrs = self._verdict_attrs[critic] = {**self.metric_attrs, A.CRITIC_NAME: critic}
        return attrs

    def start_step(self, step: int, *, attempt: int = 0) -> StepTrace:
        """Open the span of model step ``step`` (0-based); ``attempt`` counts re-asks after a ROLLBACK."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise ValueError(f"attempt must be an int >= 0, got {attempt!r}")
        if not self.span.is_recording():
            # Fast path (no provider, or the run was sampled out, which the default parent-based sampler
            # applies to its steps too): no span to create, nothing to close later. The step shares the
            # run's span context, so its ref, if any, still points into the run's trace.
            return StepTrace(self, self.span, step, owns_span=False)
        attrs: _Attrs = {
            A.STEP: step,
            A.ATTEMPT: attempt,
            A.RUN_ID: self.run_id,
            A.GUARD_KEY: self.guard_key,
            A.ARM: self.arm,
            A.OPENINFERENCE_SPAN_KIND: A.OPENINFERENCE_KIND_CHAIN,
        }
        parent = trace.set_span_in_context(self.span, otel_context.Context())
        span = self.telemetry.tracer.start_span(A.SPAN_STEP, context=parent, kind=SpanKind.INTERNAL, attributes=attrs)
        step_trace = StepTrace(self, span, step)
        with self._lock:
            self._open_steps.add(step_trace)
        return step_trace

    def set_shadow(
        self, shadow: SpanRef | str | None, *, step: int | None = None, fork_checkpoint_id: str | None = None
    ) -> None:
        """Record on this production run that a shadow branch forked from it (its trace id, fork point).

        ``shadow`` is the shadow run's ref (None when it is not traced: only the checkpoint id is kept then).
        """
        if fork_checkpoint_id is not None:
            self.fork_checkpoint_id = fork_checkpoint_id
        if shadow is None or not self.span.is_recording():
            return
        ref = SpanRef.coerce(shadow)
        attrs: _Attrs = {A.SHADOW_TRACE_ID: ref.trace_id, A.SHADOW_SPAN_ID: ref.span_id}
        _set_present(attrs, A.FORK_CHECKPOINT_ID, fork_checkpoint_id)
        _set_present(attrs, A.FORK_STEP, step)
        self.span.set_attributes(attrs)
        self.span.add_event(A.EVENT_FORK, attrs)

    def outcome(self, success: bool, *, cell: str | None = None) -> None:
        """Record this run's outcome (judge verdict) and, once both arms are in, its pair cell."""
        self.cell = _cell(cell) or self.cell
        if not self.span.is_recording():
            return
        attrs: _Attrs = {A.OUTCOME_SUCCESS: bool(success), A.ARM: self.arm}
        _set_present(attrs, A.PAIR_CELL, self.cell)
        self.span.set_attributes({k: v for k, v in attrs.items() if k != A.ARM})
        self.span.add_event(A.EVENT_OUTCOME, attrs)

    def end(self, status: str = A.STATUS_OK, *, error: BaseException | str | None = None) -> None:
        """End the run span (and any step span left open). ``status``: ok, error or incomplete.

        ``incomplete`` is a shadow branch that could not finish (e.g. an undeclared side-effecting tool): it is
        not an error of the agent, so the span status stays unset.
        """
        if status not in A.RUN_STATUSES:
            raise ValueError(f"status must be one of {A.RUN_STATUSES}, got {status!r}")
        if error is not None and status != A.STATUS_ERROR:
            raise ValueError("an error is only recorded with status='error'")
        if not self._claim_end():
            return
        with self._lock:
            left_open = list(self._open_steps)
            self._open_steps.clear()
        for step in left_open:
            step.end()
        span = self.span
        if span.is_recording():
            span.set_attribute(A.RUN_STATUS, status)
            span.set_attribute(A.RUN_INTERVENTIONS, self.interventions)
            if status == A.STATUS_ERROR:
                kind = _error_type(error) if error is not None else "_OTHER"
                span.set_attribute(A.ERROR_TYPE, kind)
                span.set_status(Status(StatusCode.ERROR, kind))
                if isinstance(error, BaseException) and self.telemetry.content.capture:
                    span.record_exception(error)  # the message may quote content: only when content is opted in
            elif status == A.STATUS_OK:
                span.set_status(Status(StatusCode.OK))
        span.end()

    def _count_intervention(self) -> None:
        with self._lock:
            self.interventions += 1

    def _step_ended(self, step: StepTrace) -> None:
        with self._lock:
            self._open_steps.discard(step)


class StepTrace(_Handle):
    """The span of one judged step. Create with ``RunTrace.start_step``; end with ``end()`` (idempotent)."""

    def __init__(self, run: RunTrace, span: trace.Span, step: int, *, owns_span: bool = True) -> None:
        super().__init__(span)
        self.run = run
        self.step = step
        self._owns_span = owns_span

    def _common(self) -> _Attrs:
        run = self.run
        attrs: _Attrs = {A.GUARD_KEY: run.guard_key, A.ARM: run.arm, A.STEP: self.step, A.RUN_ID: run.run_id}
        _set_present(attrs, A.FORK_CHECKPOINT_ID, run.fork_checkpoint_id)
        _set_present(attrs, A.PAIR_CELL, run.cell)
        return attrs

    def record_proposal(self, message: Message) -> None:
        """The proposed assistant message as ``gen_ai.output.messages``: only with content capture on."""
        if not self.span.is_recording():
            return
        captured = self.run.telemetry.content.output_messages(message)
        if captured is not None:
            self.span.set_attribute(A.GEN_AI_OUTPUT_MESSAGES, captured)

    def verdict(self, verdict: Verdict, *, critic: str, flagged: bool, tau: float | None = None) -> None:
        """The critic's verdict as a ``gen_ai.evaluation.result`` event, plus the score histogram and flag count.

        ``critic`` names the evaluation (``gen_ai.evaluation.name``); ``flagged`` is the policy's decision
        (p_fail >= tau at a step where intervening is allowed). The rationale is content (opt-in).
        """
        if not isinstance(verdict, Verdict):
            raise TypeError(f"verdict must be a critic_guard.types.Verdict, got {type(verdict).__name__}")
        if not critic or not isinstance(critic, str):
            raise ValueError(f"critic must be a non-empty string naming the critic, got {critic!r}")
        metrics_ = self.run.telemetry.metrics
        metrics_.verdict(verdict.p_fail, self.run.verdict_metric_attrs(critic))
        if flagged:
            metrics_.flag(self.run.metric_attrs)
        if not self.span.is_recording():
            return
        attrs: _Attrs = {
            A.GEN_AI_EVALUATION_NAME: critic,
            A.GEN_AI_EVALUATION_SCORE_VALUE: verdict.p_fail,
            A.FLAGGED: bool(flagged),
        }
        _set_present(attrs, A.GEN_AI_EVALUATION_SCORE_LABEL, verdict.label)
        _set_present(attrs, A.GEN_AI_EVALUATION_EXPLANATION, self.run.telemetry.content.text(verdict.rationale))
        _set_present(attrs, A.TAU, tau)
        self.span.add_event(A.EVENT_EVALUATION_RESULT, attrs)
        self.span.set_attributes({A.FLAGGED: bool(flagged), A.GEN_AI_EVALUATION_SCORE_VALUE: verdict.p_fail})

    def intervention(self, action: Action | str, *, feedback: str | None = None) -> None:
        """An intervention applied at this step: ROLLBACK or APPEND, silent (no feedback) or with feedback text."""
        try:
            act = Action(action)
        except ValueError:
            raise ValueError(f"action must be one of {[a.value for a in Action]}, got {action!r}") from None
        if act is Action.NONE:
            raise ValueError("Action.NONE is not an intervention; record the verdict instead")
        self.run._count_intervention()
        self.run.telemetry.metrics.intervention({**self.run.metric_attrs, A.ACTION: act.value})
        if not self.span.is_recording():
            return
        attrs: _Attrs = {
            A.ACTION: act.value,
            A.FEEDBACK_MODE: "silent" if feedback is None else "feedback",
            **self._common(),
        }
        _set_present(attrs, A.FEEDBACK_TEXT, self.run.telemetry.content.text(feedback))
        self.span.add_event(A.EVENT_INTERVENTION, attrs)
        self.span.set_attribute(A.ACTION, act.value)

    def critic_error(self, error: BaseException | str) -> None:
        """The critic failed at this step (no verdict): an event with ``error.type`` and the error counter."""
        kind = _error_type(error)
        self.run.telemetry.metrics.critic_error({A.GUARD_KEY: self.run.guard_key, A.ERROR_TYPE: kind})
        if not self.span.is_recording():
            return
        self.span.add_event(A.EVENT_CRITIC_ERROR, {A.ERROR_TYPE: kind, **self._common()})

    def end(self) -> None:
        if not self._claim_end() or not self._owns_span:
            return  # a fast-path step shares its run's (non-recording) span and never ends it
        self.run._step_ended(self)
        self.span.end()
