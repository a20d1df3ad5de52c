"""Span and metric exporters that append OTLP/JSON lines to a local file (the embedded default).

Why a file: a guard should leave a trace record with no collector running, in a format any OTel Collector can
ingest later (``otlpjsonfile`` receiver) and ``critic-guard traces FILE`` can show.

Durability policy, one line per export batch:
- each batch is encoded completely first, then written with ``os.write`` on a descriptor opened with
  ``O_APPEND`` — a single append of one whole line, so a crash of this process loses at most the batches still
  queued in memory, and a line is never interleaved with another writer's on a local filesystem;
- the OS gets the line immediately (no user-space buffer), so a process crash after ``export`` returns loses
  nothing; ``fsync`` (surviving an OS crash or power loss) happens on ``force_flush`` and ``shutdown``, and after
  every batch when ``fsync_every_batch=True``;
- a reader ignores a torn last line (see ``otlp_json.read_trace_file``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from critic_guard.telemetry.otlp_json import encode_metrics_line, encode_spans_line

_log = logging.getLogger(__name__)


class JsonLinesAppender:
    """Appends whole lines to one file; thread-safe; opened lazily, so an unused exporter creates no file."""

    def __init__(self, path: str | Path, *, fsync_every_batch: bool = False) -> None:
        self.path = Path(path)
        self.fsync_every_batch = fsync_every_batch
        self._fd: int | None = None
        self._closed = False
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path} is closed")
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # owner-only from creation: with content capture on, a trace holds what users typed; an existing
                # file keeps its mode (never widened)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            view = memoryview(data)
            while view:  # regular files take the whole buffer at once; loop only for the rare short write
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync_every_batch:
                os.fsync(self._fd)

    def sync(self) -> bool:
        """fsync what was appended; a failure is logged and reported as False (an exporter's flush result)."""
        try:
            with self._lock:
                if self._fd is not None:
                    os.fsync(self._fd)
        except OSError as exc:
            _log.warning("critic-guard: could not fsync %s: %s", self.path, exc)
            return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            self._closed = True


class OTLPJsonLinesSpanExporter(SpanExporter):
    """Writes each batch of spans as one ``ExportTraceServiceRequest`` line (OTLP/JSON)."""

    def __init__(self, path: str | Path, *, fsync_every_batch: bool = False) -> None:
        self._file = JsonLinesAppender(path, fsync_every_batch=fsync_every_batch)

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            self._file.append(encode_spans_line(spans))
        except (OSError, RuntimeError, ValueError) as exc:
            _log.warning("critic-guard: could not write %d spans to %s: %s", len(spans), self.path, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._file.sync()

    def shutdown(self) -> None:
        self._file.close()


class OTLPJsonLinesMetricExporter(MetricExporter):
    """Writes each metrics collection as one ``ExportMetricsServiceRequest`` line (OTLP/JSON, cumulative)."""

    def __init__(self, path: str | Path, *, fsync_every_batch: bool = False) -> None:
        super().__init__()
        self._file = JsonLinesAppender(path, fsync_every_batch=fsync_every_batch)

    @property
    def path(self) -> Path:
        return self._file.path

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS
        try:
            self._file.append(encode_metrics_line(metrics_data))
        except (OSError, RuntimeError, ValueError) as exc:
            _log.warning("critic-guard: could not write metrics to %s: %s", self.path, exc)
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._file.sync()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.close()
