"""Round trip through a real backend: export a guarded pilot's traces to Arize Phoenix over OTLP/HTTP, read them
back through Phoenix's REST API (``GET /v1/projects/{project}/spans``) and check the structure survived.

Phoenix does not store span links (its span model has parent ids, attributes and events only), which is why shadow
runs also carry the fork point as ``critic_guard.fork.*`` attributes; the link itself is checked in the OTLP/JSON
file written by the same ``configure_telemetry`` call.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phoenix_server import PhoenixUnavailable, phoenix_server
from support import skip_or_fail
from test_telemetry import run_pilot_pair

from critic_guard.telemetry import attributes as A
from critic_guard.telemetry import configure_telemetry
from critic_guard.telemetry.otlp_json import read_trace_file

pytestmark = pytest.mark.phoenix

PROJECT = "critic-guard-roundtrip"
EXPECTED_SPANS = 8  # 2 runs + 5 steps + 1 lifecycle span


@pytest.fixture(scope="module")
def phoenix_url() -> Iterator[str]:
    try:
        with phoenix_server() as url:
            yield url
    except PhoenixUnavailable as exc:
        skip_or_fail(str(exc))


def _get_spans(base: str, project: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Poll the REST API until every exported span is ingested (Phoenix inserts asynchronously)."""
    url = f"{base}/v1/projects/{urllib.parse.quote(project)}/spans?limit=1000"
    deadline = time.monotonic() + timeout_s
    data: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5.0) as response:
                data = json.loads(response.read())["data"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # 404: the project appears with its first span
                raise
        if len(data) >= EXPECTED_SPANS:
            return data
        time.sleep(0.25)
    raise AssertionError(f"Phoenix returned {len(data)} of {EXPECTED_SPANS} spans within {timeout_s}s")


def test_pilot_traces_round_trip_through_phoenix(
    phoenix_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{phoenix_url}/v1/traces")
    handles = configure_telemetry(
        file=tmp_path / "t.jsonl",
        metrics_to_file=False,
        set_global=False,
        resource_attributes={"openinference.project.name": PROJECT},
    )
    assert handles.otlp_traces is True
    run_pilot_pair(handles.telemetry)
    handles.telemetry.transition("gk-1", "pilot", "enabled", "benefit proven")
    handles.shutdown()

    spans = _get_spans(phoenix_url, PROJECT)
    assert Counter(s["name"] for s in spans) == {
        "invoke_agent support-bot": 2,
        A.SPAN_STEP: 5,
        A.SPAN_LIFECYCLE: 1,
    }
    runs = {s["attributes"][A.RUN_ROLE]: s for s in spans if s["name"] == "invoke_agent support-bot"}
    prod, shadow = runs["production"], runs["shadow"]
    prod_trace, shadow_trace = prod["context"]["trace_id"], shadow["context"]["trace_id"]

    # the run span: GenAI agent attributes, and the OpenInference kind Phoenix uses to render it
    assert prod["span_kind"] == "AGENT"
    assert prod["parent_id"] is None
    assert prod["status_code"] == "OK"
    for key, value in {
        A.GEN_AI_OPERATION_NAME: "invoke_agent",
        A.GEN_AI_AGENT_NAME: "support-bot",
        A.GEN_AI_CONVERSATION_ID: "conv-7",
        A.RUN_ID: "run-1",
        A.GUARD_KEY: "gk-1",
        A.ARM: "control",
        A.PAIR_CELL: "n01",
        A.OUTCOME_SUCCESS: False,
        A.SHADOW_TRACE_ID: shadow_trace,
    }.items():
        assert prod["attributes"][key] == value, key

    # steps are children of their run, in the run's trace
    steps = [s for s in spans if s["name"] == A.SPAN_STEP]
    prod_steps = {s["attributes"][A.STEP]: s for s in steps if s["context"]["trace_id"] == prod_trace}
    assert sorted(prod_steps) == [0, 1, 2]
    assert all(s["parent_id"] == prod["context"]["span_id"] for s in prod_steps.values())
    shadow_steps = [s for s in steps if s["context"]["trace_id"] == shadow_trace]
    assert len(shadow_steps) == 2
    assert all(s["parent_id"] == shadow["context"]["span_id"] for s in shadow_steps)

    # the shadow run: its own trace, fork point kept as attributes
    assert shadow_trace != prod_trace and shadow["parent_id"] is None
    assert shadow["attributes"][A.FORK_TRACE_ID] == prod_trace
    assert shadow["attributes"][A.FORK_SPAN_ID] == prod_steps[2]["context"]["span_id"]
    assert shadow["attributes"][A.FORK_CHECKPOINT_ID] == "ckpt-2"

    # events with their attributes
    (verdict,) = [e for e in prod_steps[2]["events"] if e["name"] == A.EVENT_EVALUATION_RESULT]
    assert verdict["attributes"][A.GEN_AI_EVALUATION_NAME] == "llm-critic"
    assert verdict["attributes"][A.GEN_AI_EVALUATION_SCORE_VALUE] == pytest.approx(0.85)
    assert verdict["attributes"][A.FLAGGED] is True
    first_try = next(s for s in shadow_steps if s["attributes"][A.ATTEMPT] == 0)
    (intervention,) = [e for e in first_try["events"] if e["name"] == A.EVENT_INTERVENTION]
    assert intervention["attributes"][A.ACTION] == "rollback"
    assert intervention["attributes"][A.ARM] == "treatment"
    assert intervention["attributes"][A.FORK_CHECKPOINT_ID] == "ckpt-2"
    assert [e["name"] for e in prod["events"]] == [A.EVENT_FORK, A.EVENT_OUTCOME]
    (lifecycle,) = [s for s in spans if s["name"] == A.SPAN_LIFECYCLE]
    assert lifecycle["events"][0]["attributes"][A.LIFECYCLE_TO] == "enabled"

    # Phoenix keeps no links; the same export's file does, pointing at a span Phoenix has
    assert "links" not in shadow
    (file_shadow,) = [
        s for s in read_trace_file(tmp_path / "t.jsonl").spans if s.attributes.get(A.RUN_ROLE) == "shadow"
    ]
    (link,) = file_shadow.links
    assert (link.trace_id, link.span_id) == (prod_trace, prod_steps[2]["context"]["span_id"])
