"""Micro-benchmark: what guard telemetry costs per agent step, with and without a configured provider.

    .venv/bin/python benchmarks/telemetry_overhead.py [--runs 2000] [--steps 10]

One "step" is what the guard does per judged model step: open the step span, record the verdict (event, score
histogram, flag counter), an intervention on one step in four, and end the span; each run also opens and ends its
run span and records an outcome. Configurations:

- no provider: the API's defaults, as in an application that never configured OpenTelemetry (must be ~free);
- SDK, batch processor + exporter that drops everything: the cost of the SDK itself (span objects, attributes);
- SDK, batch processor + the OTLP/JSON lines file exporter: the embedded default (encoding runs on the
  processor's background thread, so it shows up only as contention);
- SDK, simple processor + in-memory exporter: synchronous export, as in tests.

Prints µs per step (median over repeats, run span cost amortised over its steps).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from critic_guard.telemetry import GuardTelemetry
from critic_guard.telemetry.export import OTLPJsonLinesSpanExporter
from critic_guard.types import Action, Verdict

VERDICTS = [Verdict(p) for p in (0.05, 0.2, 0.4, 0.7, 0.9)]


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def workload(tel: GuardTelemetry, runs: int, steps: int) -> float:
    """Seconds for ``runs`` runs of ``steps`` steps each."""
    start = time.perf_counter()
    for r in range(runs):
        run = tel.start_run(f"run-{r}", "bench-agent", guard_key="bench", arm="treatment", conversation_id="c")
        for i in range(steps):
            step = run.start_step(i)
            verdict = VERDICTS[(r + i) % len(VERDICTS)]
            flagged = verdict.p_fail >= 0.6
            step.verdict(verdict, critic="bench-critic", flagged=flagged, tau=0.6)
            if flagged and i % 4 == 0:
                step.intervention(Action.ROLLBACK, feedback="try again")
            step.end()
        run.outcome(r % 2 == 0)
        run.end()
    return time.perf_counter() - start


def measure(label: str, tel: GuardTelemetry, runs: int, steps: int, repeats: int) -> float:
    workload(tel, max(1, runs // 10), steps)  # warm up (imports, caches, tracer resolution)
    per_step = sorted(workload(tel, runs, steps) / (runs * steps) * 1e6 for _ in range(repeats))
    median = statistics.median(per_step)
    print(f"{label:<58} {median:8.2f} µs/step   (min {per_step[0]:.2f}, max {per_step[-1]:.2f})")
    return median


def sdk(processor: SpanProcessor) -> tuple[GuardTelemetry, TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(processor)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tel = GuardTelemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return tel, tracer_provider, meter_provider


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    runs, steps, repeats = args.runs, args.steps, args.repeats
    print(f"{runs} runs x {steps} steps, {repeats} repeats")

    measure("no provider (API defaults)", GuardTelemetry(), runs, steps, repeats)

    tel, tp, mp = sdk(BatchSpanProcessor(DropExporter(), max_queue_size=65536))
    measure("SDK: batch processor, exporter drops spans", tel, runs, steps, repeats)
    tp.shutdown()
    mp.shutdown()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        tel, tp, mp = sdk(BatchSpanProcessor(OTLPJsonLinesSpanExporter(path), max_queue_size=65536))
        measure("SDK: batch processor, OTLP/JSON lines file", tel, runs, steps, repeats)
        tp.shutdown()
        mp.shutdown()
        print(f"{'':<58} file: {path.stat().st_size / 1e6:.1f} MB")

    memory = InMemorySpanExporter()
    tel, tp, mp = sdk(SimpleSpanProcessor(memory))
    measure("SDK: simple processor, in-memory exporter", tel, runs, steps, repeats)
    tp.shutdown()
    mp.shutdown()


if __name__ == "__main__":
    main()
