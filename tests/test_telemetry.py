"""Spans, events, links and metrics of GuardTelemetry, checked with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from critic_guard.guard import CriticGuard
from critic_guard.telemetry import GuardTelemetry, SpanRef
from critic_guard.telemetry import attributes as A
from critic_guard.types import Action, StepContext, Verdict


@dataclass
class Rig:
    tel: GuardTelemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def by_name(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """Data points of one metric, keyed by their attribute set: value for sums/gauges, the point otherwise."""
        data = self.reader.get_metrics_data()
        out: dict[frozenset[tuple[str, Any]], Any] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != metric:
                        continue
                    for p in m.data.data_points:
                        key = frozenset((p.attributes or {}).items())
                        out[key] = getattr(p, "value", p)
        return out


def make_rig(**kwargs: Any) -> Rig:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    tel = GuardTelemetry(tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]), **kwargs)
    return Rig(tel, exporter, reader, provider)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = make_rig()
    yield r
    r.provider.shutdown()


def hexid(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def event(span: ReadableSpan, name: str) -> dict[str, Any]:
    found = [dict(e.attributes or {}) for e in span.events if e.name == name]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


def run_pilot_pair(tel: GuardTelemetry) -> None:
    """A production run (control) flagged at step 2, forked into a shadow treatment branch that rolls back."""
    prod = tel.start_run("run-1", "support-bot", guard_key="gk-1", arm="control", conversation_id="conv-7")
    for i in range(3):
        step = prod.start_step(i)
        p = (0.1, 0.3, 0.85)[i]
        step.verdict(Verdict(p, rationale="the agent ignored the refund policy"), critic="llm-critic",
                     flagged=p >= 0.6, tau=0.6)  # fmt: skip
        if i == 2:
            shadow = tel.start_run("run-1", "support-bot", guard_key="gk-1", arm="treatment", shadow=True,
                                   link_to=step.ref, fork_checkpoint_id="ckpt-2", fork_step=2)  # fmt: skip
            prod.set_shadow(shadow.ref, step=2, fork_checkpoint_id="ckpt-2")
            sstep = shadow.start_step(2)
            sstep.verdict(Verdict(0.85, label="fail"), critic="llm-critic", flagged=True, tau=0.6)
            sstep.intervention(Action.ROLLBACK, feedback="Re-read the refund policy before answering.")
            sstep.end()
            again = shadow.start_step(2, attempt=1)
            again.verdict(Verdict(0.2), critic="llm-critic", flagged=False, tau=0.6)
            again.end()
            shadow.outcome(True, cell="n01")
            shadow.end()
        step.end()
    prod.outcome(False, cell="n01")
    prod.end()
    tel.pair("gk-1", "n01")


def test_run_span_is_an_invoke_agent_span_with_genai_and_guard_attributes(rig: Rig) -> None:
    run_pilot_pair(rig.tel)
    runs = rig.by_name("invoke_agent support-bot")
    assert len(runs) == 2
    prod = next(s for s in runs if s.attributes[A.RUN_ROLE] == "production")
    assert prod.kind is SpanKind.INTERNAL
    attrs = dict(prod.attributes or {})
    assert attrs[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert attrs[A.GEN_AI_AGENT_NAME] == "support-bot"
    assert attrs[A.GEN_AI_CONVERSATION_ID] == "conv-7"
    assert attrs[A.RUN_ID] == "run-1"
    assert attrs[A.GUARD_KEY] == "gk-1"
    assert attrs[A.ARM] == "control"
    assert attrs[A.OUTCOME_SUCCESS] is False
    assert attrs[A.PAIR_CELL] == "n01"
    assert attrs[A.RUN_STATUS] == "ok"
    assert attrs[A.RUN_INTERVENTIONS] == 0
    assert prod.status.status_code is StatusCode.OK
    assert prod.parent is None  # nothing was current: the production run starts its own trace


def test_steps_are_children_of_their_run_and_carry_the_verdict_event(rig: Rig) -> None:
    run_pilot_pair(rig.tel)
    prod = next(s for s in rig.by_name("invoke_agent support-bot") if s.attributes[A.ARM] == "control")
    prod_trace, prod_span = hexid(prod)
    steps = [s for s in rig.by_name(A.SPAN_STEP) if hexid(s)[0] == prod_trace]
    assert sorted(s.attributes[A.STEP] for s in steps) == [0, 1, 2]
    for s in steps:
        assert s.parent is not None and trace.format_span_id(s.parent.span_id) == prod_span
    step2 = next(s for s in steps if s.attributes[A.STEP] == 2)
    # the critic gave no label (we do not invent one) and the rationale is content (off by default)
    assert event(step2, A.EVENT_EVALUATION_RESULT) == {
        A.GEN_AI_EVALUATION_NAME: "llm-critic",
        A.GEN_AI_EVALUATION_SCORE_VALUE: 0.85,
        A.FLAGGED: True,
        A.TAU: 0.6,
    }
    # the step span carries who/where, and the score and decision for filtering in a backend
    assert {k: step2.attributes[k] for k in (A.STEP, A.ARM, A.GUARD_KEY, A.RUN_ID, A.FLAGGED)} == {
        A.STEP: 2,
        A.ARM: "control",
        A.GUARD_KEY: "gk-1",
        A.RUN_ID: "run-1",
        A.FLAGGED: True,
    }
    step0 = next(s for s in steps if s.attributes[A.STEP] == 0)
    assert event(step0, A.EVENT_EVALUATION_RESULT)[A.FLAGGED] is False


def test_shadow_run_is_its_own_trace_linked_to_the_production_step(rig: Rig) -> None:
    run_pilot_pair(rig.tel)
    runs = rig.by_name("invoke_agent support-bot")
    prod = next(s for s in runs if s.attributes[A.RUN_ROLE] == "production")
    shadow = next(s for s in runs if s.attributes[A.RUN_ROLE] == "shadow")
    prod_trace, _ = hexid(prod)
    shadow_trace, shadow_span = hexid(shadow)
    assert shadow_trace != prod_trace
    assert shadow.parent is None
    fork_step = next(s for s in rig.by_name(A.SPAN_STEP) if hexid(s)[0] == prod_trace and s.attributes[A.STEP] == 2)
    (link,) = shadow.links
    assert (trace.format_trace_id(link.context.trace_id), trace.format_span_id(link.context.span_id)) == hexid(
        fork_step
    )
    assert dict(link.attributes or {}) == {A.LINK_TYPE: A.LINK_FORK, A.FORK_STEP: 2}
    # the same fork point as attributes, for backends that drop links (Phoenix does)
    assert shadow.attributes[A.FORK_TRACE_ID] == prod_trace
    assert shadow.attributes[A.FORK_SPAN_ID] == hexid(fork_step)[1]
    assert shadow.attributes[A.FORK_CHECKPOINT_ID] == "ckpt-2"
    # and the production run points at the shadow trace
    assert prod.attributes[A.SHADOW_TRACE_ID] == shadow_trace
    assert prod.attributes[A.SHADOW_SPAN_ID] == shadow_span
    fork_ev = event(prod, A.EVENT_FORK)
    assert fork_ev[A.SHADOW_TRACE_ID] == shadow_trace and fork_ev[A.FORK_STEP] == 2
    assert fork_ev[A.FORK_CHECKPOINT_ID] == "ckpt-2"


def test_a_shadow_links_from_the_traceparent_string_kept_in_graph_state(rig: Rig) -> None:
    prod = rig.tel.start_run("r", "a", guard_key="k", arm="treatment")
    step = prod.start_step(4)
    state = {"fork_ref": str(step.ref)}  # what the integration stores (LangGraph state / the store)
    step.end()
    prod.end()
    shadow = rig.tel.start_run("r", "a", guard_key="k", arm="control", shadow=True, link_to=state["fork_ref"])
    shadow.end()
    span = next(s for s in rig.by_name("invoke_agent a") if s.attributes[A.RUN_ROLE] == "shadow")
    (link,) = span.links
    assert link.context.span_id == step.span.get_span_context().span_id
    assert link.context.is_remote


def test_intervention_event_carries_action_arm_step_key_checkpoint(rig: Rig) -> None:
    run_pilot_pair(rig.tel)
    shadow = next(s for s in rig.by_name("invoke_agent support-bot") if s.attributes[A.RUN_ROLE] == "shadow")
    shadow_trace, _ = hexid(shadow)
    steps = sorted((s for s in rig.by_name(A.SPAN_STEP) if hexid(s)[0] == shadow_trace),
                   key=lambda s: s.attributes[A.ATTEMPT])  # fmt: skip
    assert [(s.attributes[A.STEP], s.attributes[A.ATTEMPT]) for s in steps] == [(2, 0), (2, 1)]
    ev = event(steps[0], A.EVENT_INTERVENTION)
    assert ev == {
        A.ACTION: "rollback",
        A.FEEDBACK_MODE: "feedback",
        A.GUARD_KEY: "gk-1",
        A.ARM: "treatment",
        A.STEP: 2,
        A.RUN_ID: "run-1",
        A.FORK_CHECKPOINT_ID: "ckpt-2",
    }  # no feedback text: content capture is off by default
    assert event(steps[0], A.EVENT_EVALUATION_RESULT)[A.GEN_AI_EVALUATION_SCORE_LABEL] == "fail"
    assert not [e for e in steps[1].events if e.name == A.EVENT_INTERVENTION]
    assert shadow.attributes[A.RUN_INTERVENTIONS] == 1
    assert event(shadow, A.EVENT_OUTCOME) == {A.OUTCOME_SUCCESS: True, A.ARM: "treatment", A.PAIR_CELL: "n01"}


def test_no_content_is_recorded_by_default(rig: Rig) -> None:
    run_pilot_pair(rig.tel)
    step = rig.tel.start_run("r", "a", guard_key="k", arm="control").start_step(0)
    step.record_proposal({"role": "assistant", "content": "secret answer", "tool_calls": []})
    step.end()
    dump = json.dumps([json.loads(s.to_json()) for s in rig.finished()])
    for text in ("refund policy", "Re-read", "secret answer"):
        assert text not in dump
    assert A.GEN_AI_EVALUATION_EXPLANATION not in dump
    assert A.GEN_AI_OUTPUT_MESSAGES not in dump


def test_content_is_captured_and_redacted_when_opted_in() -> None:
    rig = make_rig(capture_content=True, redact=lambda s: s.replace("4111-1111", "[card]"))
    step = rig.tel.start_run("r", "a", guard_key="k", arm="treatment").start_step(3)
    step.record_proposal(
        {
            "role": "assistant",
            "content": "charging 4111-1111 now",
            "tool_calls": [{"id": "c1", "name": "charge", "arguments": {"card": "4111-1111", "amount": 12}}],
        }
    )
    step.verdict(Verdict(0.9, rationale="card 4111-1111 charged twice"), critic="c", flagged=True)
    step.intervention(Action.APPEND, feedback="Do not charge 4111-1111 again.")
    step.end()
    (span,) = rig.by_name(A.SPAN_STEP)
    assert json.loads(span.attributes[A.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "charging [card] now"},
                {"type": "tool_call", "id": "c1", "name": "charge", "arguments": {"card": "[card]", "amount": 12}},
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert event(span, A.EVENT_EVALUATION_RESULT)[A.GEN_AI_EVALUATION_EXPLANATION] == "card [card] charged twice"
    assert event(span, A.EVENT_INTERVENTION)[A.FEEDBACK_TEXT] == "Do not charge [card] again."
    assert "4111" not in span.to_json()


def test_a_failing_redactor_never_leaks_the_text() -> None:
    def broken(_: str) -> str:
        raise RuntimeError("boom")

    rig = make_rig(capture_content=True, redact=broken)
    step = rig.tel.start_run("r", "a", guard_key="k", arm="control").start_step(0)
    step.verdict(Verdict(0.7, rationale="private detail"), critic="c", flagged=False)
    step.end()
    (span,) = rig.by_name(A.SPAN_STEP)
    assert event(span, A.EVENT_EVALUATION_RESULT)[A.GEN_AI_EVALUATION_EXPLANATION] == "[redaction failed]"


def test_capture_follows_the_genai_env_var_when_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    assert make_rig().tel.content.capture is True
    assert make_rig(capture_content=False).tel.content.capture is False
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "NO_CONTENT")
    assert make_rig().tel.content.capture is False


def test_production_run_nests_under_the_current_span_like_openinference(rig: Rig) -> None:
    outer_tracer = rig.provider.get_tracer("openinference.instrumentation.langchain")
    with outer_tracer.start_as_current_span("LangGraph") as outer:
        run = rig.tel.start_run("r", "agent", guard_key="k", arm="control")
        step = run.start_step(0)
        # e.g. around the critic call: its LLM spans nest under our step
        with step.activate(), outer_tracer.start_as_current_span("ChatModel critic"):
            pass
        step.end()
        run.end()
    run_span = rig.by_name("invoke_agent agent")[0]
    outer_ctx = outer.get_span_context()
    assert run_span.parent is not None and run_span.parent.span_id == outer_ctx.span_id
    assert run_span.context.trace_id == outer_ctx.trace_id
    critic_llm = rig.by_name("ChatModel critic")[0]
    step_span = rig.by_name(A.SPAN_STEP)[0]
    assert critic_llm.parent is not None and critic_llm.parent.span_id == step_span.context.span_id
    # ...while a shadow run started in the same context still gets a trace of its own
    with outer_tracer.start_as_current_span("LangGraph again"):
        shadow = rig.tel.start_run("r", "agent", guard_key="k", arm="treatment", shadow=True)
        shadow.end()
    shadow_span = next(s for s in rig.by_name("invoke_agent agent") if s.attributes[A.RUN_ROLE] == "shadow")
    assert shadow_span.parent is None and shadow_span.context.trace_id != outer_ctx.trace_id


def test_an_explicit_parent_wins_over_the_current_span(rig: Rig) -> None:
    """OpenInference keeps its LangChain spans per callback run, not as the current span inside hooks; the
    integration hands its span over as ``parent`` (a live span, or a ref string from another process)."""
    outer = rig.provider.get_tracer("openinference.instrumentation.langchain").start_span("LangGraph")
    with rig.provider.get_tracer("app").start_as_current_span("unrelated current span"):
        rig.tel.start_run("r", "a", guard_key="k", arm="control", parent=outer).end()
    outer.end()
    ref = SpanRef.from_span_context(outer.get_span_context())
    rig.tel.start_run("r2", "a", guard_key="k", arm="control", parent=str(ref)).end()
    first, second = rig.by_name("invoke_agent a")
    for span in (first, second):
        assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
        assert span.context.trace_id == outer.get_span_context().trace_id
    with pytest.raises(ValueError, match="takes link_to, not parent"):
        rig.tel.start_run("r3", "a", guard_key="k", arm="treatment", shadow=True, parent=outer)


def test_transition_goes_on_the_current_span_or_a_short_span_of_its_own(rig: Rig) -> None:
    rig.tel.transition("gk", "pilot", "disabled", "harm proven (wealth 21.3 >= 20)")
    (own,) = rig.by_name(A.SPAN_LIFECYCLE)
    assert event(own, A.EVENT_TRANSITION) == {
        A.GUARD_KEY: "gk",
        A.LIFECYCLE_FROM: "pilot",
        A.LIFECYCLE_TO: "disabled",
        A.LIFECYCLE_REASON: "harm proven (wealth 21.3 >= 20)",
    }
    with rig.provider.get_tracer("app").start_as_current_span("request"):
        rig.tel.transition("gk", "disabled", "pilot", "evidence reset")
    assert len(rig.by_name(A.SPAN_LIFECYCLE)) == 1  # no new span: the event went on the current one
    assert event(rig.by_name("request")[0], A.EVENT_TRANSITION)[A.LIFECYCLE_TO] == "pilot"
    run = rig.tel.start_run("r", "a", guard_key="gk", arm="control")
    rig.tel.transition("gk", "pilot", "enabled", "benefit proven", on=run)
    run.end()
    assert event(rig.by_name("invoke_agent a")[0], A.EVENT_TRANSITION)[A.LIFECYCLE_TO] == "enabled"


def test_metrics_count_verdicts_flags_interventions_pairs_errors(rig: Rig) -> None:
    run_pilot_pair(rig.tel)
    run = rig.tel.start_run("run-2", "support-bot", guard_key="gk-1", arm="control")
    step = run.start_step(0)
    step.critic_error(TimeoutError("critic timed out"))
    step.critic_error("rate_limited")
    run.end()

    hist = rig.points(A.METRIC_VERDICT_SCORE)
    prod_key = frozenset({A.GUARD_KEY: "gk-1", A.ARM: "control", A.RUN_ROLE: "production",
                          A.CRITIC_NAME: "llm-critic"}.items())  # fmt: skip
    shadow_key = frozenset({A.GUARD_KEY: "gk-1", A.ARM: "treatment", A.RUN_ROLE: "shadow",
                            A.CRITIC_NAME: "llm-critic"}.items())  # fmt: skip
    assert hist[prod_key].count == 3 and hist[prod_key].sum == pytest.approx(0.1 + 0.3 + 0.85)
    assert hist[shadow_key].count == 2 and hist[shadow_key].sum == pytest.approx(0.85 + 0.2)
    assert list(hist[prod_key].explicit_bounds) == list(A.VERDICT_SCORE_BUCKETS)
    # 0.1 lands in (0, 0.1], 0.3 in (0.2, 0.3], 0.85 in (0.8, 0.9]
    assert list(hist[prod_key].bucket_counts) == [0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]

    flags = rig.points(A.METRIC_FLAGS)
    assert flags == {
        frozenset({A.GUARD_KEY: "gk-1", A.ARM: "control", A.RUN_ROLE: "production"}.items()): 1,
        frozenset({A.GUARD_KEY: "gk-1", A.ARM: "treatment", A.RUN_ROLE: "shadow"}.items()): 1,
    }
    assert rig.points(A.METRIC_INTERVENTIONS) == {
        frozenset({A.GUARD_KEY: "gk-1", A.ARM: "treatment", A.RUN_ROLE: "shadow", A.ACTION: "rollback"}.items()): 1
    }
    assert rig.points(A.METRIC_PAIRS) == {frozenset({A.GUARD_KEY: "gk-1", A.PAIR_CELL: "n01"}.items()): 1}
    assert rig.points(A.METRIC_CRITIC_ERRORS) == {
        frozenset({A.GUARD_KEY: "gk-1", A.ERROR_TYPE: "TimeoutError"}.items()): 1,
        frozenset({A.GUARD_KEY: "gk-1", A.ERROR_TYPE: "rate_limited"}.items()): 1,
    }
    (err_step,) = [s for s in rig.by_name(A.SPAN_STEP) if s.attributes[A.RUN_ID] == "run-2"]
    assert [dict(e.attributes or {})[A.ERROR_TYPE] for e in err_step.events] == ["TimeoutError", "rate_limited"]


def test_monitor_wealth_and_lifecycle_state_gauges(rig: Rig) -> None:
    rig.tel.monitor("gk", 3.5, threshold=20.0)
    rig.tel.monitor("gk", 7.25, threshold=20.0)
    key = frozenset({A.GUARD_KEY: "gk", A.MONITOR_HYPOTHESIS: "harm"}.items())
    assert rig.points(A.METRIC_MONITOR_WEALTH) == {key: 7.25}
    assert rig.points(A.METRIC_MONITOR_THRESHOLD) == {key: 20.0}
    rig.tel.transition("gk", "pilot", "enabled", "benefit proven")
    rig.tel.transition("gk", "enabled", "disabled", "harm proven")

    def state(name: str) -> frozenset[tuple[str, Any]]:
        return frozenset({A.GUARD_KEY: "gk", A.LIFECYCLE_STATE: name}.items())

    assert rig.points(A.METRIC_LIFECYCLE_STATE) == {state("pilot"): 0, state("enabled"): 0, state("disabled"): 1}


def test_end_is_idempotent_and_closes_steps_left_open(rig: Rig) -> None:
    run = rig.tel.start_run("r", "a", guard_key="k", arm="control")
    run.start_step(0)
    run.end("error", error=ValueError("tool exploded"))
    run.end()
    assert len(rig.by_name(A.SPAN_STEP)) == 1
    (span,) = rig.by_name("invoke_agent a")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "ValueError"
    assert span.attributes[A.RUN_STATUS] == "error"
    assert not span.events  # the exception message may quote content: not recorded without opt-in
    incomplete = rig.tel.start_run("r2", "a", guard_key="k", arm="treatment", shadow=True)
    incomplete.end("incomplete")
    (span2,) = rig.by_name("invoke_agent a")[1:]
    assert span2.status.status_code is StatusCode.UNSET and span2.attributes[A.RUN_STATUS] == "incomplete"


def test_record_outcome_after_the_run_ended_lands_in_the_runs_trace(rig: Rig) -> None:
    run = rig.tel.start_run("r", "a", guard_key="k", arm="control")
    ref = str(run.ref)
    run.end()
    out = rig.tel.record_outcome(ref, run_id="r", guard_key="k", arm="control", success=True, cell="n11")
    (late,) = rig.by_name(A.SPAN_OUTCOME)
    parsed = SpanRef.parse(ref)
    assert late.parent is not None and trace.format_span_id(late.parent.span_id) == parsed.span_id
    assert hexid(late)[0] == parsed.trace_id and out is not None and out.trace_id == parsed.trace_id
    assert event(late, A.EVENT_OUTCOME)[A.PAIR_CELL] == "n11"


def test_span_ref_round_trips_through_traceparent() -> None:
    ref = SpanRef("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert str(ref) == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert SpanRef.parse(str(ref)) == ref
    assert SpanRef.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").sampled is False
    ctx = ref.span_context()
    assert ctx.is_remote and ctx.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert SpanRef.from_span_context(ctx) == ref
    assert SpanRef.from_span_context(trace.INVALID_SPAN_CONTEXT) is None
    for bad in ("", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01"):
        with pytest.raises(ValueError, match="traceparent"):
            SpanRef.parse(bad)
    with pytest.raises(ValueError, match="not all zero"):
        SpanRef("0" * 32, "00f067aa0ba902b7")


def test_bad_input_is_rejected_with_clear_errors(rig: Rig) -> None:
    tel = rig.tel
    with pytest.raises(ValueError, match="arm must be one of"):
        tel.start_run("r", "a", guard_key="k", arm="both")
    with pytest.raises(ValueError, match="run_id"):
        tel.start_run("", "a", guard_key="k", arm="control")
    with pytest.raises(ValueError, match="production run cannot"):
        tel.start_run("r", "a", guard_key="k", arm="control", link_to=SpanRef("1" * 32, "2" * 16))
    run = tel.start_run("r", "a", guard_key="k", arm="control")
    with pytest.raises(ValueError, match="step must be"):
        run.start_step(-1)
    step = run.start_step(0)
    with pytest.raises(ValueError, match="not an intervention"):
        step.intervention(Action.NONE)
    with pytest.raises(ValueError, match="action must be"):
        step.intervention("restart")
    with pytest.raises(TypeError, match="Verdict"):
        step.verdict(0.5, critic="c", flagged=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pair cell"):
        run.outcome(True, cell="n2")
    with pytest.raises(ValueError, match="status must be"):
        run.end("done")
    with pytest.raises(ValueError, match="pair cell"):
        tel.pair("k", "n5")


def test_attribute_names_never_nest_inside_each_other() -> None:
    """Phoenix stores attributes as a tree: `a.b` and `a.b.c` together would collide."""
    names = {
        v
        for k, v in vars(A).items()
        if isinstance(v, str) and k.isupper() and "." in v and not k.startswith(("METRIC_", "SPAN_", "EVENT_"))
    }
    clashes = [(a, b) for a in names for b in names if b.startswith(a + ".")]
    assert clashes == []
    assert A.RUN_ID in names and A.GEN_AI_EVALUATION_SCORE_VALUE in names


def test_without_a_provider_everything_is_a_no_op() -> None:
    """In a fresh interpreter (no global provider installed): no spans, no refs, no errors, no cost to speak of."""
    script = """
from opentelemetry import trace
from critic_guard.telemetry import GuardTelemetry
from critic_guard.types import Action, Verdict
tel = GuardTelemetry()
run = tel.start_run("r", "a", guard_key="k", arm="control")
step = run.start_step(0)
step.verdict(Verdict(0.9, rationale="x"), critic="c", flagged=True)
step.intervention(Action.ROLLBACK, feedback="f")
step.end()
run.outcome(True, cell="n11")
tel.transition("k", "pilot", "enabled", "r")
tel.monitor("k", 2.0)
run.end()
print(type(trace.get_tracer_provider()).__name__, run.is_recording, run.ref, step.ref)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["ProxyTracerProvider", "False", "None", "None"]
    assert out.stderr == ""


def test_a_sampled_out_run_records_no_spans_but_still_counts_metrics() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    tel = GuardTelemetry(tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]))
    rig = Rig(tel, exporter, reader, provider)
    run = tel.start_run("r", "a", guard_key="k", arm="treatment")
    step = run.start_step(0)
    step.verdict(Verdict(0.9), critic="c", flagged=True)
    step.intervention(Action.APPEND)
    step.end()
    run.end()
    assert rig.finished() == []
    assert run.ref is not None and run.ref.sampled is False and step.ref == run.ref
    assert rig.points(A.METRIC_INTERVENTIONS) == {
        frozenset({A.GUARD_KEY: "k", A.ARM: "treatment", A.RUN_ROLE: "production", A.ACTION: "append"}.items()): 1
    }


async def test_an_async_critics_own_spans_nest_under_its_step_on_the_guards_loop(rig: Rig) -> None:
    """The critic runs on the guard's event loop thread, in the caller's context: its LLM span is the step's child."""
    tracer = rig.provider.get_tracer("my.critic")

    async def critic(ctx: StepContext) -> float:
        with tracer.start_as_current_span("critic llm"):
            await asyncio.sleep(0)
        return 0.2

    guard = CriticGuard(critic, mode="on", store=None, telemetry=rig.tel)
    guard.start_run(run_id="r")
    review = await guard.areview(StepContext("r", 0, ({"role": "user", "content": "hi"},)))
    guard.end_run("r")
    guard.close()
    assert review.verdict == Verdict(0.2)
    [llm] = rig.by_name("critic llm")
    [step] = rig.by_name(A.SPAN_STEP)
    assert llm.parent is not None and llm.parent.span_id == step.context.span_id
