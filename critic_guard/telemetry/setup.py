"""One call to get guard telemetry somewhere: a local OTLP/JSON lines file, and OTLP/HTTP when asked for.

``configure_telemetry()`` writes spans to ``critic_guard_traces.jsonl`` (metrics to
``critic_guard_traces.metrics.jsonl``: the file format allows one signal per file) and, when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``) is set
or ``otlp=True``, also sends them over OTLP/HTTP to any collector (Phoenix, Jaeger, Tempo, ...), configured by
the standard ``OTEL_EXPORTER_OTLP_*`` variables.

Global providers, and why we never clobber them:
- no global SDK provider yet and ``set_global=True`` (default): ours becomes the global one, so spans of other
  instrumentations (OpenInference, OpenLLMetry) land in the same file and trace tree;
- the application already installed an SDK ``TracerProvider``: we keep it and add our file exporter to it (and
  OTLP only with ``otlp=True``: the application presumably exports already); a global SDK ``MeterProvider``
  cannot take new readers, so it is used as is and no metrics file is written;
- ``set_global=False``, or a global provider of another kind: private providers, globals untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from opentelemetry import metrics, trace
from opentelemetry.metrics._internal import _ProxyMeterProvider

from critic_guard.telemetry.content import Redactor
from critic_guard.telemetry.tracing import GuardTelemetry

MISSING_SDK = (
    "a trace file or OTLP export needs the OpenTelemetry SDK, which critic-guard installs with its `otlp` extra: "
    "pip install 'critic-guard[otlp]'"
)

# critic-guard depends on the OpenTelemetry API only (like OTel's own instrumentations); the SDK, the trace file's
# OTLP encoder and the OTLP/HTTP exporter come with the `otlp` extra. This module is loaded on first use
# (``critic_guard.telemetry.__getattr__``), so only asking for a trace file or OTLP export needs them.
try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from critic_guard.telemetry.export import OTLPJsonLinesMetricExporter, OTLPJsonLinesSpanExporter
except ImportError as exc:
    raise ImportError(f"{MISSING_SDK} ({exc})", name=exc.name) from exc

DEFAULT_TRACE_FILE = "critic_guard_traces.jsonl"
DEFAULT_SERVICE_NAME = "critic-guard"
_HTTP_PROTOCOLS = frozenset({"", "http/protobuf"})


def metrics_path_for(trace_file: str | Path) -> Path:
    """Where metrics go beside a trace file: ``x.jsonl`` -> ``x.metrics.jsonl``."""
    path = Path(trace_file)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.metrics{path.suffix or '.jsonl'}")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _otlp_wanted(otlp: bool | None, signal: str) -> bool:
    if otlp is not None:
        return otlp
    return bool(_env("OTEL_EXPORTER_OTLP_ENDPOINT") or _env(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


def _check_protocol(signal: str) -> None:
    protocol = (_env(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or _env("OTEL_EXPORTER_OTLP_PROTOCOL")).lower()
    if protocol not in _HTTP_PROTOCOLS:
        raise ValueError(
            f"OTLP protocol {protocol!r} is not supported by critic-guard's exporter: it sends OTLP/HTTP "
            "(http/protobuf). Unset OTEL_EXPORTER_OTLP_PROTOCOL or set it to http/protobuf (port 4318)."
        )


def _otlp_span_processor() -> SpanProcessor:
    _check_protocol("TRACES")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ImportError("OTLP export needs the `otlp` extra: pip install 'critic-guard[otlp]'") from exc
    return BatchSpanProcessor(OTLPSpanExporter())


def _otlp_metric_reader(interval_ms: float) -> MetricReader:
    _check_protocol("METRICS")
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ImportError("OTLP export needs the `otlp` extra: pip install 'critic-guard[otlp]'") from exc
    return PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=interval_ms)


@dataclass
class TelemetryHandles:
    """What ``configure_telemetry`` set up; ``shutdown()`` flushes and closes what it owns (idempotent)."""

    telemetry: GuardTelemetry
    tracer_provider: TracerProvider
    meter_provider: metrics.MeterProvider
    trace_file: Path | None
    metrics_file: Path | None
    otlp_traces: bool
    otlp_metrics: bool
    installed_global: bool
    owns_tracer_provider: bool
    owns_meter_provider: bool
    _processors: list[SpanProcessor] = field(default_factory=list, repr=False)
    _shut: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued so far (spans to the file / collector, a metrics collection)."""
        ok = all(p.force_flush(timeout_millis) for p in self._processors)
        if isinstance(self.meter_provider, MeterProvider) and self.owns_meter_provider:
            ok = self.meter_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and close. A provider we do not own (the application's) is only flushed, never shut down."""
        if self._shut:
            return
        self._shut = True
        if self.owns_tracer_provider:
            self.tracer_provider.shutdown()
        else:
            for processor in self._processors:
                processor.force_flush()
        if self.owns_meter_provider and isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.shutdown()

    def __enter__(self) -> TelemetryHandles:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def configure_telemetry(
    *,
    file: str | Path | None = DEFAULT_TRACE_FILE,
    metrics_to_file: bool = True,
    otlp: bool | None = None,
    service_name: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    set_global: bool = True,
    capture_content: bool | None = None,
    redact: Redactor | None = None,
    metric_export_interval_s: float = 60.0,
    fsync_every_batch: bool = False,
) -> TelemetryHandles:
    """Set up tracing (+ metrics) for critic-guard and return the handles, including a ready ``GuardTelemetry``.

    ``file``: OTLP/JSON lines trace file (None: no file); metrics go to ``metrics_path_for(file)`` unless
    ``metrics_to_file=False``. ``otlp``: None follows the ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variables, True
    always exports OTLP/HTTP (default endpoint http://localhost:4318), False never. ``service_name`` defaults to
    ``OTEL_SERVICE_NAME``, else ``critic-guard``. ``resource_attributes`` are added to the resource (e.g.
    ``{"openinference.project.name": "my-agent"}`` picks the Phoenix project).
    """
    if metric_export_interval_s <= 0:
        raise ValueError(f"metric_export_interval_s must be > 0, got {metric_export_interval_s!r}")
    service = service_name or _env("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    resource = Resource.create({"service.name": service, **dict(resource_attributes or {})})
    trace_path = Path(file) if file is not None else None
    metrics_path = metrics_path_for(trace_path) if trace_path is not None and metrics_to_file else None
    interval_ms = metric_export_interval_s * 1000.0

    current_tp = trace.get_tracer_provider()
    reuse_tp = set_global and isinstance(current_tp, TracerProvider)
    otlp_traces = bool(otlp) if reuse_tp else _otlp_wanted(otlp, "TRACES")
    processors: list[SpanProcessor] = []
    if trace_path is not None:
        processors.append(
            BatchSpanProcessor(OTLPJsonLinesSpanExporter(trace_path, fsync_every_batch=fsync_every_batch))
        )
    if otlp_traces:
        processors.append(_otlp_span_processor())
    if reuse_tp:
        assert isinstance(current_tp, TracerProvider)
        tracer_provider = current_tp
    else:
        tracer_provider = TracerProvider(resource=resource)
    for processor in processors:
        tracer_provider.add_span_processor(processor)

    current_mp = metrics.get_meter_provider()
    reuse_mp = set_global and isinstance(current_mp, MeterProvider)
    meter_provider: metrics.MeterProvider
    otlp_metrics = False
    if reuse_mp:
        meter_provider, metrics_path = current_mp, None
    else:
        readers: list[MetricReader] = []
        if metrics_path is not None:
            exporter = OTLPJsonLinesMetricExporter(metrics_path, fsync_every_batch=fsync_every_batch)
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms))
        otlp_metrics = _otlp_wanted(otlp, "METRICS")
        if otlp_metrics:
            readers.append(_otlp_metric_reader(interval_ms))
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    installed = False
    if set_global and not reuse_tp and _is_default(trace.get_tracer_provider()):
        trace.set_tracer_provider(tracer_provider)
        installed = True
    if set_global and not reuse_mp and _is_default(metrics.get_meter_provider()):
        metrics.set_meter_provider(meter_provider)

    return TelemetryHandles(
        telemetry=GuardTelemetry(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=capture_content,
            redact=redact,
        ),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        trace_file=trace_path,
        metrics_file=metrics_path,
        otlp_traces=otlp_traces,
        otlp_metrics=otlp_metrics,
        installed_global=installed,
        owns_tracer_provider=not reuse_tp,
        owns_meter_provider=not reuse_mp,
        _processors=processors,
    )


def _is_default(provider: object) -> bool:
    """True while the API still holds its placeholder (proxy) provider, i.e. nobody installed one.

    The metrics API does not export its proxy class under a public name; it is imported from where it lives.
    """
    return isinstance(provider, trace.ProxyTracerProvider | _ProxyMeterProvider)
