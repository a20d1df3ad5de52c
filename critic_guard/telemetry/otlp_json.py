"""The OTLP/JSON lines file format: one ``Export*ServiceRequest`` per line, as the Collector reads and writes it.

This is the format of the OpenTelemetry file exporter specification and of the Collector's ``otlpjsonfile``
receiver and ``file`` exporter: JSON lines, UTF-8, each line one ``ExportTraceServiceRequest`` (or
``ExportMetricsServiceRequest``; one signal per file), protobuf JSON mapping with lowerCamelCase keys, int64 as
strings, enums as integers, and, unlike plain protobuf JSON, trace and span ids as lowercase hex.

Encoding reuses the OTLP exporters' own protobuf encoders so the content is exactly what OTLP/HTTP would send;
decoding is a small reader for ``critic-guard traces`` and tests.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]  # no stubs shipped
from google.protobuf.message import Message as ProtoMessage  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.trace import ReadableSpan

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(obj: Any) -> Any:
    """Rewrite base64 id fields (protobuf's JSON mapping of bytes) as the hex OTLP/JSON requires, in place."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_KEYS and isinstance(value, str):
                obj[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids(item)
    return obj


def _to_line(message: ProtoMessage) -> str:
    as_dict = MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(as_dict), separators=(",", ":"), ensure_ascii=False)


def encode_spans_line(spans: Sequence[ReadableSpan]) -> str:
    """One ``ExportTraceServiceRequest`` line (without the newline) for a batch of finished spans."""
    return _to_line(encode_spans(spans))


def encode_metrics_line(data: MetricsData) -> str:
    """One ``ExportMetricsServiceRequest`` line (without the newline) for one metrics collection."""
    return _to_line(encode_metrics(data))


# --- reading ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    name: str
    time_unix_nano: int
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LinkRecord:
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span read back from an OTLP/JSON file (ids in hex, times in ns since the epoch)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_unix_nano: int
    end_unix_nano: int
    attributes: Mapping[str, Any]
    events: tuple[EventRecord, ...] = ()
    links: tuple[LinkRecord, ...] = ()
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    resource: Mapping[str, Any] = field(default_factory=dict)
    scope: str = ""


@dataclass(frozen=True, slots=True)
class TraceFile:
    """All spans of a file, and which lines could not be used (a crash can truncate the last line)."""

    spans: tuple[SpanRecord, ...]
    bad_lines: int
    other_signal_lines: int
    skipped: tuple[tuple[int, str], ...] = ()
    """``(line number, why)`` of each unusable line, in file order (``bad_lines`` counts them)."""
    lines: int = 0
    """Non-blank lines read."""


def _any_value(value: Mapping[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attributes(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _any_value(item.get("value", {})) for item in items}


def _spans_of(request: Mapping[str, Any]) -> Iterator[SpanRecord]:
    for resource_spans in request.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = scope_spans.get("scope", {}).get("name", "")
            for span in scope_spans.get("spans", []):
                status = span.get("status", {})
                yield SpanRecord(
                    trace_id=span["traceId"],
                    span_id=span["spanId"],
                    parent_span_id=span.get("parentSpanId") or None,
                    name=span.get("name", ""),
                    start_unix_nano=int(span.get("startTimeUnixNano", 0)),
                    end_unix_nano=int(span.get("endTimeUnixNano", 0)),
                    attributes=_attributes(span.get("attributes", [])),
                    events=tuple(
                        EventRecord(
                            e.get("name", ""), int(e.get("timeUnixNano", 0)), _attributes(e.get("attributes", []))
                        )
                        for e in span.get("events", [])
                    ),
                    links=tuple(
                        LinkRecord(lk["traceId"], lk["spanId"], _attributes(lk.get("attributes", [])))
                        for lk in span.get("links", [])
                    ),
                    status_code=int(status.get("code", 0)),
                    status_message=status.get("message", ""),
                    resource=resource,
                    scope=scope,
                )


def _why_unusable(exc: Exception, raw: bytes) -> str:
    if not raw.endswith(b"\n"):
        return "cut short, e.g. by a crash mid-write"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, OverflowError):
        return "a number out of range"
    if isinstance(exc, json.JSONDecodeError):
        return "not JSON"
    return "not an OTLP/JSON trace request"


def _request(raw: bytes) -> Any:
    request = json.loads(raw.decode("utf-8"))
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    return request


def read_trace_file(path: str | Path) -> TraceFile:
    """Read every span of an OTLP/JSON lines file.

    Blank lines are ignored; lines of another signal (metrics, logs) are counted and skipped; a line that is not
    UTF-8, not JSON, nested too deeply for the parser, out of range (a timestamp of ``1e999``) or not OTLP (e.g. a
    last line cut short by a crash, possibly inside a UTF-8 character) is recorded in ``skipped``, not fatal: the
    other lines are still read. Each line is decoded on its own, so one bad byte costs one line.
    """
    spans: list[SpanRecord] = []
    skipped: list[tuple[int, str]] = []
    other = lines = 0
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            lines += 1
            try:
                request = _request(raw)
                if "resourceSpans" not in request:
                    other += 1
                    continue
                spans.extend(list(_spans_of(request)))  # all of the line or none of it
            except (
                ValueError,
                KeyError,
                TypeError,
                AttributeError,
                RecursionError,
                OverflowError,
                binascii.Error,
            ) as exc:
                skipped.append((number, _why_unusable(exc, raw)))
    return TraceFile(tuple(spans), len(skipped), other, tuple(skipped), lines)
