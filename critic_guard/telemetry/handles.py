"""The span handles of a guarded run: :class:`RunTrace` (one run) and :class:`StepTrace` (one judged step).

Why handles, and the trace shape they build: critic_guard/telemetry/tracing.py (whose :class:`GuardTelemetry`
starts a run and returns its handle) and docs/telemetry.md, "The trace of a run". A handle is ended explicitly,
once, from whichever hook or thread ends it; attributes and events are only computed when its span records.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.refs import SpanRef
from critic_guard.types import Action, Message, Verdict

if TYPE_CHECKING:
    from critic_guard.telemetry.tracing import GuardTelemetry

__all__ = ["RunTrace", "StepTrace"]

Attrs = dict[str, AttributeValue]
"""Span or event attributes being built (tracing.py shares it, :func:`checked_cell` and :func:`set_present`)."""


def checked_cell(value: str | None) -> str | None:
    """``value`` if it is a pair cell (n00, n01, n10, n11) or None; a ValueError otherwise."""
    if value is not None and value not in A.PAIR_CELLS:
        raise ValueError(f"pair cell must be one of {A.PAIR_CELLS}, got {value!r}")
    return value


def _error_type(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        return type(error).__qualname__
    if not isinstance(error, str) or not error:
        raise ValueError(f"error must be an exception or a non-empty error type string, got {error!r}")
    return error


def set_present(target: Attrs, key: str, value: AttributeValue | None) -> None:
    """``target[key] = value`` unless ``value`` is None (an attribute that is absent, not empty)."""
    if value is not None:
        target[key] = value


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
        attrs: Attrs = {
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
        attrs: Attrs = {A.SHADOW_TRACE_ID: ref.trace_id, A.SHADOW_SPAN_ID: ref.span_id}
        set_present(attrs, A.FORK_CHECKPOINT_ID, fork_checkpoint_id)
        set_present(attrs, A.FORK_STEP, step)
        self.span.set_attributes(attrs)
        self.span.add_event(A.EVENT_FORK, attrs)

    def outcome(self, success: bool, *, cell: str | None = None) -> None:
        """Record this run's outcome (judge verdict) and, once both arms are in, its pair cell."""
        self.cell = checked_cell(cell) or self.cell
        if not self.span.is_recording():
            return
        attrs: Attrs = {A.OUTCOME_SUCCESS: bool(success), A.ARM: self.arm}
        set_present(attrs, A.PAIR_CELL, self.cell)
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

    def _common(self) -> Attrs:
        run = self.run
        attrs: Attrs = {A.GUARD_KEY: run.guard_key, A.ARM: run.arm, A.STEP: self.step, A.RUN_ID: run.run_id}
        set_present(attrs, A.FORK_CHECKPOINT_ID, run.fork_checkpoint_id)
        set_present(attrs, A.PAIR_CELL, run.cell)
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
        attrs: Attrs = {
            A.GEN_AI_EVALUATION_NAME: critic,
            A.GEN_AI_EVALUATION_SCORE_VALUE: verdict.p_fail,
            A.FLAGGED: bool(flagged),
        }
        set_present(attrs, A.GEN_AI_EVALUATION_SCORE_LABEL, verdict.label)
        set_present(attrs, A.GEN_AI_EVALUATION_EXPLANATION, self.run.telemetry.content.text(verdict.rationale))
        set_present(attrs, A.TAU, tau)
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
        attrs: Attrs = {
            A.ACTION: act.value,
            A.FEEDBACK_MODE: "silent" if feedback is None else "feedback",
            **self._common(),
        }
        set_present(attrs, A.FEEDBACK_TEXT, self.run.telemetry.content.text(feedback))
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
