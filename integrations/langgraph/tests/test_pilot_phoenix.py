"""A real guarded pilot's traces through a real backend: Arize Phoenix, read back through its REST API.

The pilot of :mod:`test_pilot_telemetry` (a create_agent agent, one recovery and one disruption) exported over
OTLP/HTTP by ``configure_telemetry`` to a Phoenix server this test starts (tests/phoenix_server.py), then
``GET /v1/projects/{project}/spans``. Phoenix keeps no span links, so the fork point also travels as
``critic_guard.fork.*`` attributes, which are checked here; the link itself is checked in the OTLP/JSON file the same
call writes.
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
from test_pilot_telemetry import run_pilot

from critic_guard.telemetry import attributes as A
from critic_guard.telemetry import configure_telemetry
from critic_guard.telemetry.otlp_json import read_trace_file
from tests.phoenix_server import PhoenixUnavailable, phoenix_server
from tests.support import serve_or_skip

pytestmark = pytest.mark.phoenix

PROJECT = "critic-guard-pilot"
RUN = "invoke_agent calc"


@pytest.fixture(scope="module")
def phoenix_url() -> Iterator[str]:
    yield from serve_or_skip(phoenix_server(), PhoenixUnavailable)


def _get_spans(base: str, expected: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Poll the REST API until ``expected`` spans are ingested (Phoenix inserts asynchronously)."""
    url = f"{base}/v1/projects/{urllib.parse.quote(PROJECT)}/spans?limit=1000"
    deadline = time.monotonic() + timeout_s
    data: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5.0) as response:
                data = json.loads(response.read())["data"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # 404: the project appears with its first span
                raise
        if len(data) >= expected:
            return data
        time.sleep(0.25)
    raise AssertionError(f"Phoenix returned {len(data)} of {expected} spans within {timeout_s}s")


def test_a_real_pilot_round_trips_through_phoenix(
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
    guard = run_pilot(handles.telemetry, f"sqlite:///{tmp_path / 'guard.db'}")
    pairs = {p.pair_id: p for p in guard.pairs()}
    guard.close()
    handles.shutdown()
    exported = read_trace_file(tmp_path / "t.jsonl").spans

    spans = _get_spans(phoenix_url, len(exported))
    assert Counter(s["name"] for s in spans) == Counter(s.name for s in exported)
    runs = {s["attributes"][A.RUN_ID]: s for s in spans if s["name"] == RUN}
    assert len(runs) == 4
    cells = set()
    for pair in pairs.values():
        prod, shadow = runs[pair.control_run_id], runs[pair.treatment_run_id]
        prod_trace, shadow_trace = prod["context"]["trace_id"], shadow["context"]["trace_id"]
        assert prod["span_kind"] == "AGENT" and prod["parent_id"] is None and prod["status_code"] == "OK"
        assert prod["attributes"][A.GEN_AI_AGENT_NAME] == "calc"
        assert prod["attributes"][A.SHADOW_TRACE_ID] == shadow_trace
        assert prod["attributes"][A.FORK_CHECKPOINT_ID] == pair.fork_checkpoint_id
        prod_steps = {
            s["attributes"][A.STEP]: s
            for s in spans
            if s["name"] == A.SPAN_STEP and s["context"]["trace_id"] == prod_trace
        }
        assert sorted(prod_steps) == [0, 1, 2, 3, 4]
        assert all(s["parent_id"] == prod["context"]["span_id"] for s in prod_steps.values())
        (verdict,) = [e for e in prod_steps[2]["events"] if e["name"] == A.EVENT_EVALUATION_RESULT]
        assert verdict["attributes"][A.GEN_AI_EVALUATION_SCORE_VALUE] == pytest.approx(0.9)
        assert verdict["attributes"][A.FLAGGED] is True

        assert shadow_trace != prod_trace and shadow["parent_id"] is None
        assert shadow["attributes"][A.FORK_TRACE_ID] == prod_trace
        assert shadow["attributes"][A.FORK_SPAN_ID] == prod_steps[2]["context"]["span_id"]
        fork_step = next(
            s
            for s in spans
            if s["name"] == A.SPAN_STEP
            and s["context"]["trace_id"] == shadow_trace
            and s["attributes"][A.STEP] == 2
            and s["attributes"][A.ATTEMPT] == 0  # the fork step; attempt 1 is the retry after the rollback
        )
        (intervention,) = [e for e in fork_step["events"] if e["name"] == A.EVENT_INTERVENTION]
        assert intervention["attributes"][A.ACTION] == "rollback"
        outcome_cells = {
            e["attributes"].get(A.PAIR_CELL)
            for s in spans
            if s["context"]["trace_id"] in (prod_trace, shadow_trace)
            for e in s["events"]
            if e["name"] == A.EVENT_OUTCOME
        }
        assert pair.cell in outcome_cells
        cells.add(pair.cell)

        # Phoenix keeps no links; the file from the same export does, pointing at a span Phoenix has
        assert "links" not in shadow
        (file_shadow,) = [s for s in exported if s.name == RUN and s.attributes[A.RUN_ID] == pair.treatment_run_id]
        (link,) = file_shadow.links
        assert (link.trace_id, link.span_id) == (prod_trace, prod_steps[2]["context"]["span_id"])
    assert cells == {"n01", "n10"}
