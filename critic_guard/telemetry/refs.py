"""Serialisable handles to spans: what a run stores in graph state to be linked or continued elsewhere.

Why: a shadow branch may start in another thread, process or replica than the production run it forks from, and
an outcome may arrive hours later through ``record_outcome``. A live ``Span`` object cannot travel there; its
trace id and span id can. ``SpanRef`` is that pair, written as a W3C ``traceparent`` string so it is also what
every tracing tool already understands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opentelemetry import trace

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True)
class SpanRef:
    """A span's identity: lowercase hex trace id (32 digits) and span id (16 digits), and the sampled flag."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.trace_id, str) or not _HEX32.match(self.trace_id) or set(self.trace_id) == {"0"}:
            raise ValueError(f"trace_id must be 32 lowercase hex digits, not all zero; got {self.trace_id!r}")
        if not isinstance(self.span_id, str) or not _HEX16.match(self.span_id) or set(self.span_id) == {"0"}:
            raise ValueError(f"span_id must be 16 lowercase hex digits, not all zero; got {self.span_id!r}")

    @classmethod
    def parse(cls, text: str) -> SpanRef:
        """Read a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``), the form ``str(ref)`` writes."""
        match = _TRACEPARENT.match(text.strip().lower()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>): {text!r}")
        trace_id, span_id, flags = match.groups()
        return cls(trace_id, span_id, sampled=bool(int(flags, 16) & 0x01))

    @classmethod
    def coerce(cls, value: SpanRef | str) -> SpanRef:
        """Accept a ``SpanRef`` or its ``traceparent`` string (what comes back out of graph state or a store)."""
        return value if isinstance(value, SpanRef) else cls.parse(value)

    @classmethod
    def from_span_context(cls, ctx: trace.SpanContext) -> SpanRef | None:
        """The ref of a span context, or None for an invalid one (the no-op tracer's spans)."""
        if not ctx.is_valid:
            return None
        return cls(
            trace.format_trace_id(ctx.trace_id),
            trace.format_span_id(ctx.span_id),
            sampled=ctx.trace_flags.sampled,
        )

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def span_context(self) -> trace.SpanContext:
        """A remote span context for this ref: usable as a link target or as a parent."""
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if self.sampled else trace.TraceFlags.DEFAULT)
        return trace.SpanContext(int(self.trace_id, 16), int(self.span_id, 16), is_remote=True, trace_flags=flags)

    def __str__(self) -> str:
        return self.traceparent
