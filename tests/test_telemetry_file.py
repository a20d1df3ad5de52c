"""The OTLP/JSON lines file: exporter output format, reading it back, the terminal view, and configure_telemetry."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from test_telemetry import run_pilot_pair

from critic_guard.telemetry import GuardTelemetry, configure_telemetry, render_traces
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.export import OTLPJsonLinesMetricExporter, OTLPJsonLinesSpanExporter
from critic_guard.telemetry.otlp_json import read_trace_file
from critic_guard.telemetry.setup import metrics_path_for

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def write_pilot(path: Path, *, batch: bool = False) -> InMemorySpanExporter:
    """Run the pilot scenario with the file exporter and an in-memory exporter side by side."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    file_exporter = OTLPJsonLinesSpanExporter(path)
    provider.add_span_processor(BatchSpanProcessor(file_exporter) if batch else SimpleSpanProcessor(file_exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tel = GuardTelemetry(tracer_provider=provider)
    run_pilot_pair(tel)
    tel.transition("gk-1", "pilot", "enabled", "benefit proven")
    provider.shutdown()
    return memory


def test_each_line_is_an_otlp_json_export_request(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    memory = write_pilot(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(memory.get_finished_spans()) == 8  # simple processor: one batch (line) per span
    first = json.loads(lines[0])
    (resource_spans,) = first["resourceSpans"]
    (scope_spans,) = resource_spans["scopeSpans"]
    assert scope_spans["scope"]["name"] == "critic_guard"
    (span,) = scope_spans["spans"]
    assert HEX32.match(span["traceId"]) and HEX16.match(span["spanId"]) and HEX16.match(span["parentSpanId"])
    assert span["kind"] == 1  # SPAN_KIND_INTERNAL, enums as integers
    assert isinstance(span["startTimeUnixNano"], str) and int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
    assert {"key": A.STEP, "value": {"intValue": "0"}} in span["attributes"]  # int64 as a string
    shadow = next(
        s
        for line in lines
        for s in json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
        if any(a["key"] == A.RUN_ROLE and a["value"]["stringValue"] == "shadow" for a in s["attributes"])
    )
    (link,) = shadow["links"]
    assert HEX32.match(link["traceId"]) and HEX16.match(link["spanId"])


def test_reading_the_file_gives_back_the_spans_the_sdk_exported(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    memory = write_pilot(path)
    data = read_trace_file(path)
    assert data.bad_lines == 0 and data.other_signal_lines == 0
    by_id = {s.span_id: s for s in data.spans}
    for original in memory.get_finished_spans():
        ctx = original.get_span_context()
        assert ctx is not None
        back = by_id[trace.format_span_id(ctx.span_id)]
        assert back.trace_id == trace.format_trace_id(ctx.trace_id)
        assert back.name == original.name
        assert back.parent_span_id == (trace.format_span_id(original.parent.span_id) if original.parent else None)
        assert dict(back.attributes) == dict(original.attributes or {})
        assert [(e.name, dict(e.attributes)) for e in back.events] == [
            (e.name, dict(e.attributes or {})) for e in original.events
        ]
        assert [(lk.trace_id, lk.span_id) for lk in back.links] == [
            (trace.format_trace_id(lk.context.trace_id), trace.format_span_id(lk.context.span_id))
            for lk in original.links
        ]
        assert back.start_unix_nano == original.start_time and back.end_unix_nano == original.end_time


def test_batches_are_flushed_on_shutdown_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path, batch=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert len(read_trace_file(path).spans) == 8


def test_trace_view_shows_runs_steps_verdicts_interventions_and_the_fork_link(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    out = io.StringIO()
    summary = render_traces(path, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert summary.traces == 2 and summary.runs == 2 and summary.shadow_runs == 1
    assert summary.steps == 5 and summary.verdicts == 5 and summary.flags == 2 and summary.interventions == 1
    assert summary.resolved_fork_links == 1 and summary.transitions == 1 and summary.bad_lines == 0
    prod_trace = next(s.trace_id for s in read_trace_file(path).spans if s.attributes.get(A.RUN_ROLE) == "production")
    shadow_trace = next(s.trace_id for s in read_trace_file(path).spans if s.attributes.get(A.RUN_ROLE) == "shadow")
    assert f"trace {prod_trace}" in text and f"trace {shadow_trace}" in text
    assert "production run run-1  agent=support-bot arm=control guard=gk-1 conversation=conv-7" in text
    assert "outcome=failure cell=n01" in text
    assert "verdict p_fail=0.850 critic=llm-critic  FLAG (tau 0.6)" in text
    assert f"fork at step 2 -> shadow trace {shadow_trace} checkpoint=ckpt-2" in text
    assert f"forked from production run run-1 step 2 (trace {prod_trace}" in text
    assert "intervention ROLLBACK (feedback)" in text
    assert "step 2 (re-ask 1)" in text
    assert "lifecycle gk-1: pilot -> enabled (benefit proven)" in text
    assert "refund policy" not in text  # content was not captured, so it cannot be shown
    # the fork line sits right after the production run's step 2, before its outcome
    assert text.index("fork at step 2") < text.index("outcome failure")


def test_a_torn_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ab')  # a crash mid-write
    data = read_trace_file(path)
    last = len(path.read_bytes().splitlines())
    assert (
        data.bad_lines == 1
        and len(data.spans) == 8
        and data.skipped == ((last, "cut short, e.g. by a crash mid-write"),)
    )
    out = io.StringIO()
    assert render_traces(path, Console(file=out, width=200)).bad_lines == 1
    assert f"skipped 1 unreadable line: {last} (cut short, e.g. by a crash mid-write)" in out.getvalue()


def test_metrics_go_to_their_own_otlp_json_file(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    reader = PeriodicExportingMetricReader(OTLPJsonLinesMetricExporter(path), export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader])
    tel = GuardTelemetry(tracer_provider=trace.NoOpTracerProvider(), meter_provider=provider)
    run_pilot_pair(tel)
    provider.shutdown()  # collects and exports once
    (line,) = path.read_text(encoding="utf-8").splitlines()
    request = json.loads(line)
    metrics = {m["name"]: m for m in request["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]}
    assert {A.METRIC_VERDICT_SCORE, A.METRIC_FLAGS, A.METRIC_INTERVENTIONS, A.METRIC_PAIRS} <= set(metrics)
    (pairs,) = metrics[A.METRIC_PAIRS]["sum"]["dataPoints"]
    assert pairs["asInt"] == "1"
    hist = metrics[A.METRIC_VERDICT_SCORE]["histogram"]["dataPoints"]
    assert sorted(int(p["count"]) for p in hist) == [2, 3]
    assert read_trace_file(path).other_signal_lines == 1  # the trace reader skips metrics lines


def test_metrics_path_sits_beside_the_trace_file() -> None:
    assert metrics_path_for("out/critic_guard_traces.jsonl") == Path("out/critic_guard_traces.metrics.jsonl")
    assert metrics_path_for("traces") == Path("traces.metrics.jsonl")


def test_configure_telemetry_privately_leaves_globals_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-agent")
    before = trace.get_tracer_provider()
    handles = configure_telemetry(file=tmp_path / "t.jsonl", set_global=False)
    try:
        assert handles.tracer_provider.resource.attributes["service.name"] == "checkout-agent"
        assert trace.get_tracer_provider() is before
        assert handles.otlp_traces is True and handles.otlp_metrics is False  # only the traces endpoint is set
        assert handles.trace_file == tmp_path / "t.jsonl"
        assert handles.metrics_file == tmp_path / "t.metrics.jsonl"
        assert handles.installed_global is False and handles.owns_tracer_provider is True
    finally:
        handles.shutdown()
    assert not (tmp_path / "t.jsonl").exists()  # nothing emitted, nothing written: the file opens lazily


def test_configure_telemetry_refuses_otlp_grpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="http/protobuf"):
        configure_telemetry(file=tmp_path / "t.jsonl", otlp=True, set_global=False)
    with pytest.raises(ValueError, match="metric_export_interval_s"):
        configure_telemetry(file=None, set_global=False, metric_export_interval_s=0)


_GLOBAL_SCRIPT = """
import json, sys
from pathlib import Path
from opentelemetry import trace
from critic_guard.telemetry import configure_telemetry
from critic_guard.types import Verdict
out = Path(sys.argv[1])
handles = configure_telemetry(file=out / "t.jsonl", resource_attributes={"openinference.project.name": "p1"})
assert trace.get_tracer_provider() is handles.tracer_provider
with trace.get_tracer("openinference.instrumentation.langchain").start_as_current_span("LangGraph"):
    run = handles.telemetry.start_run("r1", "bot", guard_key="k", arm="control")
    step = run.start_step(0)
    step.verdict(Verdict(0.4), critic="c", flagged=False)
    step.end()
    run.end()
handles.shutdown()
print(json.dumps({"installed": handles.installed_global, "metrics_file": str(handles.metrics_file)}))
"""

_USER_PROVIDER_SCRIPT = """
import json, sys
from pathlib import Path
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from critic_guard.telemetry import configure_telemetry
out = Path(sys.argv[1])
mine = InMemorySpanExporter()
user = TracerProvider()
user.add_span_processor(SimpleSpanProcessor(mine))
trace.set_tracer_provider(user)
handles = configure_telemetry(file=out / "t.jsonl")
assert trace.get_tracer_provider() is user and handles.tracer_provider is user
handles.telemetry.start_run("r1", "bot", guard_key="k", arm="control").end()
handles.shutdown()
print(json.dumps({"installed": handles.installed_global, "owns": handles.owns_tracer_provider,
                  "user_saw": [s.name for s in mine.get_finished_spans()]}))
"""


def _run_script(script: str, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_configure_telemetry_installs_global_providers_in_a_fresh_process(tmp_path: Path) -> None:
    result = _run_script(_GLOBAL_SCRIPT, tmp_path)
    assert result == {"installed": True, "metrics_file": str(tmp_path / "t.metrics.jsonl")}
    spans = read_trace_file(tmp_path / "t.jsonl").spans
    names = sorted(s.name for s in spans)
    assert names == ["LangGraph", A.SPAN_STEP, "invoke_agent bot"]  # the other instrumentation's span too
    outer = next(s for s in spans if s.name == "LangGraph")
    run = next(s for s in spans if s.name == "invoke_agent bot")
    assert run.parent_span_id == outer.span_id
    assert run.resource["service.name"] == "critic-guard" and run.resource["openinference.project.name"] == "p1"
    metrics_line = json.loads((tmp_path / "t.metrics.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    names_m = {m["name"] for sm in metrics_line["resourceMetrics"][0]["scopeMetrics"] for m in sm["metrics"]}
    assert A.METRIC_VERDICT_SCORE in names_m


def test_configure_telemetry_keeps_an_application_provider(tmp_path: Path) -> None:
    result = _run_script(_USER_PROVIDER_SCRIPT, tmp_path)
    assert result == {"installed": False, "owns": False, "user_saw": ["invoke_agent bot"]}
    assert [s.name for s in read_trace_file(tmp_path / "t.jsonl").spans] == ["invoke_agent bot"]
