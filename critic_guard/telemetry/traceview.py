"""``critic-guard traces FILE``: a terminal view of a guard's OTLP/JSON trace file.

Why: the first question after a pilot is "what did the guard do in that run", and opening a tracing backend for
it is a detour. This renders one tree per trace: the run, its steps with the critic's verdict, flags and
interventions, the run's outcome and pair cell, and for a shadow branch which production run and step it forked
from (resolved through the span link, or the ``critic_guard.fork.*`` attributes when a link is missing).
Spans of other instrumentations in the same file are counted, not shown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from critic_guard.safe_text import visible as v
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.otlp_json import EventRecord, SpanRecord, TraceFile, read_trace_file


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """Counts of what ``render_traces`` showed (also what a test or the CLI can check)."""

    traces: int
    runs: int
    shadow_runs: int
    steps: int
    verdicts: int
    flags: int
    interventions: int
    transitions: int
    resolved_fork_links: int
    other_spans: int
    bad_lines: int
    matching_traces: int = 0
    """Traces that matched the filters, before ``limit`` kept the most recent ones."""


def _short(span_id: str | None) -> str:
    return (span_id or "")[:8]


def _is_run(span: SpanRecord) -> bool:
    return span.attributes.get(A.GEN_AI_OPERATION_NAME) == A.OPERATION_INVOKE_AGENT and A.RUN_ID in span.attributes


def _fmt_score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else v(value)


class _Index:
    """Spans of one file, indexed for parent/child and link lookups."""

    def __init__(self, spans: Iterable[SpanRecord]) -> None:
        self.by_id: dict[tuple[str, str], SpanRecord] = {}
        self.children: dict[tuple[str, str], list[SpanRecord]] = defaultdict(list)
        for span in spans:
            self.by_id[(span.trace_id, span.span_id)] = span
        for span in self.by_id.values():
            if span.parent_span_id is not None:
                self.children[(span.trace_id, span.parent_span_id)].append(span)

    def kids(self, span: SpanRecord) -> list[SpanRecord]:
        return sorted(self.children.get((span.trace_id, span.span_id), []), key=lambda s: s.start_unix_nano)

    def run_of(self, span: SpanRecord) -> SpanRecord | None:
        if span.parent_span_id is None:
            return None
        parent = self.by_id.get((span.trace_id, span.parent_span_id))
        return parent if parent is not None and _is_run(parent) else None


def _fork_target(run: SpanRecord) -> tuple[str, str] | None:
    for link in run.links:
        if link.attributes.get(A.LINK_TYPE) == A.LINK_FORK:
            return link.trace_id, link.span_id
    trace_id, span_id = run.attributes.get(A.FORK_TRACE_ID), run.attributes.get(A.FORK_SPAN_ID)
    if isinstance(trace_id, str) and isinstance(span_id, str):
        return trace_id, span_id
    return None


class _Renderer:
    def __init__(self, index: _Index) -> None:
        self.index = index
        self.counts: dict[str, int] = defaultdict(int)

    def run_label(self, run: SpanRecord) -> Text:
        a = run.attributes
        role = v(a.get(A.RUN_ROLE, A.ROLE_PRODUCTION))
        text = Text()
        text.append(f"{role} run ", style="bold magenta" if role == A.ROLE_SHADOW else "bold cyan")
        text.append(v(a.get(A.RUN_ID)), style="bold")
        text.append(f"  agent={v(a.get(A.GEN_AI_AGENT_NAME))} arm={v(a.get(A.ARM))} guard={v(a.get(A.GUARD_KEY))}")
        if A.GEN_AI_CONVERSATION_ID in a:
            text.append(f" conversation={v(a[A.GEN_AI_CONVERSATION_ID])}")
        status = a.get(A.RUN_STATUS)
        if status is not None:
            text.append(f"  [{v(status)}]", style="red" if status == A.STATUS_ERROR else "green")
        if A.OUTCOME_SUCCESS in a:
            ok = bool(a[A.OUTCOME_SUCCESS])
            text.append(f"  outcome={'success' if ok else 'failure'}", style="green" if ok else "red")
        if A.PAIR_CELL in a:
            text.append(f" cell={v(a[A.PAIR_CELL])}", style="bold")
        return text

    def fork_line(self, run: SpanRecord) -> Text | None:
        target = _fork_target(run)
        if target is None:
            return None
        text = Text("forked from ", style="magenta")
        step_span = self.index.by_id.get(target)
        origin = self.index.run_of(step_span) if step_span is not None else None
        if step_span is not None and origin is not None:
            self.counts["resolved"] += 1
            text.append(f"production run {v(origin.attributes.get(A.RUN_ID))} ", style="bold")
            text.append(f"step {v(step_span.attributes.get(A.STEP))} ")
        text.append(f"(trace {v(target[0])}, span {v(_short(target[1]))})")
        checkpoint = run.attributes.get(A.FORK_CHECKPOINT_ID)
        if checkpoint is not None:
            text.append(f" checkpoint={v(checkpoint)}")
        return text

    def event_line(self, event: EventRecord) -> Text | None:
        a = event.attributes
        if event.name == A.EVENT_EVALUATION_RESULT:
            self.counts["verdicts"] += 1
            text = Text(f"verdict p_fail={_fmt_score(a.get(A.GEN_AI_EVALUATION_SCORE_VALUE))}")
            if A.GEN_AI_EVALUATION_SCORE_LABEL in a:
                text.append(f" label={v(a[A.GEN_AI_EVALUATION_SCORE_LABEL])}")
            text.append(f" critic={v(a.get(A.GEN_AI_EVALUATION_NAME))}", style="dim")
            if a.get(A.FLAGGED):
                self.counts["flags"] += 1
                tau = f" (tau {v(a[A.TAU])})" if A.TAU in a else ""
                text.append(f"  FLAG{tau}", style="bold yellow")
            if A.GEN_AI_EVALUATION_EXPLANATION in a:
                text.append(f"\n  rationale: {v(a[A.GEN_AI_EVALUATION_EXPLANATION])}", style="italic")
            return text
        if event.name == A.EVENT_INTERVENTION:
            self.counts["interventions"] += 1
            text = Text(f"intervention {v(a.get(A.ACTION)).upper()}", style="bold red")
            text.append(f" ({v(a.get(A.FEEDBACK_MODE))})")
            if A.FEEDBACK_TEXT in a:
                text.append(f"\n  feedback: {v(a[A.FEEDBACK_TEXT])}", style="italic")
            return text
        if event.name == A.EVENT_CRITIC_ERROR:
            return Text(f"critic error: {v(a.get(A.ERROR_TYPE))}", style="red")
        if event.name == A.EVENT_FORK:
            step = f" at step {v(a[A.FORK_STEP])}" if A.FORK_STEP in a else ""
            text = Text(f"fork{step} -> shadow trace {v(a.get(A.SHADOW_TRACE_ID))}", style="magenta")
            if A.FORK_CHECKPOINT_ID in a:
                text.append(f" checkpoint={v(a[A.FORK_CHECKPOINT_ID])}")
            return text
        if event.name == A.EVENT_OUTCOME:
            ok = bool(a.get(A.OUTCOME_SUCCESS))
            cell = f" cell={v(a[A.PAIR_CELL])}" if A.PAIR_CELL in a else ""
            return Text(f"outcome {'success' if ok else 'failure'}{cell}", style="green" if ok else "red")
        if event.name == A.EVENT_TRANSITION:
            self.counts["transitions"] += 1
            return _transition_text(a)
        return None

    def add_events(self, node: Tree, events: Iterable[EventRecord]) -> None:
        for event in events:
            line = self.event_line(event)
            if line is not None:
                node.add(line)

    def add_run(self, parent: Tree, run: SpanRecord) -> None:
        self.counts["runs"] += 1
        if run.attributes.get(A.RUN_ROLE) == A.ROLE_SHADOW:
            self.counts["shadow_runs"] += 1
        node = parent.add(self.run_label(run))
        fork = self.fork_line(run)
        if fork is not None:
            node.add(fork)
        if A.SHADOW_TRACE_ID in run.attributes and not any(e.name == A.EVENT_FORK for e in run.events):
            node.add(Text(f"shadow trace {v(run.attributes[A.SHADOW_TRACE_ID])}", style="magenta"))
        # steps and the run's own events (fork, outcome) in time order, so a fork shows right after its step
        items: list[tuple[int, SpanRecord | EventRecord]] = [
            (k.start_unix_nano, k) for k in self.index.kids(run) if k.name == A.SPAN_STEP
        ]
        items += [(e.time_unix_nano, e) for e in run.events]
        for late in (k for k in self.index.kids(run) if k.name == A.SPAN_OUTCOME):
            items += [(e.time_unix_nano, e) for e in late.events]
        for _, item in sorted(items, key=lambda pair: pair[0]):
            if isinstance(item, EventRecord):
                self.add_events(node, [item])
                continue
            self.counts["steps"] += 1
            attempt = item.attributes.get(A.ATTEMPT, 0)
            label = Text(f"step {v(item.attributes.get(A.STEP))}", style="bold")
            if attempt:
                label.append(f" (re-ask {v(attempt)})", style="dim")
            self.add_events(node.add(label), item.events)


def _transition_text(a: Mapping[str, Any]) -> Text:
    text = Text(
        f"lifecycle {v(a.get(A.GUARD_KEY))}: {v(a.get(A.LIFECYCLE_FROM))} -> {v(a.get(A.LIFECYCLE_TO))}", style="blue"
    )
    text.append(f" ({v(a.get(A.LIFECYCLE_REASON))})", style="dim")
    return text


DEFAULT_TRACE_LIMIT = 20
"""How many traces ``critic-guard traces`` shows unless told otherwise: the most recent ones (a pilot's file holds
thousands; ``--limit 0`` shows all)."""


class UnreadableTraceFileError(ValueError):
    """A trace file none of whose lines could be read: the wrong file, not a torn last line."""


def _skipped_note(data: TraceFile) -> str:
    shown = ", ".join(f"{number} ({why})" for number, why in data.skipped[:3])
    more = f" and {data.bad_lines - 3} more" if data.bad_lines > 3 else ""
    noun = "line" if data.bad_lines == 1 else "lines"
    return f"skipped {data.bad_lines} unreadable {noun}: {shown}{more}"


def _run_ids(index: _Index, runs: Iterable[SpanRecord]) -> set[str]:
    """The run ids a trace answers to: its own runs, and the production run a shadow branch forked from."""
    ids: set[str] = set()
    for run in runs:
        ids.add(str(run.attributes.get(A.RUN_ID)))
        target = _fork_target(run)
        step_span = index.by_id.get(target) if target is not None else None
        origin = index.run_of(step_span) if step_span is not None else None
        if origin is not None:
            ids.add(str(origin.attributes.get(A.RUN_ID)))
    return ids


def render_traces(
    path: str | Path,
    console: Console | None = None,
    *,
    run_id: str | None = None,
    trace_id: str | None = None,
    limit: int = DEFAULT_TRACE_LIMIT,
) -> TraceSummary:
    """Print one tree per trace of ``path`` (an OTLP/JSON lines file) and return what was shown.

    ``run_id`` keeps the traces of that run and of the shadow branches forked from it; ``trace_id`` keeps the
    traces whose id starts with it; ``limit`` keeps the most recent matching traces (0: all). Lifecycle
    transitions are shown when no filter is given. Unreadable lines are skipped and named at the end; a file with
    no readable line at all raises :class:`UnreadableTraceFileError`. Every stored string is shown as data
    (:mod:`critic_guard.safe_text`).
    """
    console = console or Console()
    data = read_trace_file(path)
    if data.lines and data.bad_lines == data.lines:
        raise UnreadableTraceFileError(f"{v(path)} has no readable OTLP/JSON line; {_skipped_note(data)}")
    index = _Index(data.spans)
    ours = [s for s in index.by_id.values() if s.scope == A.INSTRUMENTATION_SCOPE]
    runs_by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in ours:
        if _is_run(span):
            runs_by_trace[span.trace_id].append(span)
    filtered = run_id is not None or trace_id is not None
    lifecycle = (
        [] if filtered else sorted((s for s in ours if s.name == A.SPAN_LIFECYCLE), key=lambda s: s.start_unix_nano)
    )
    first_start = {t: min(r.start_unix_nano for r in rs) for t, rs in runs_by_trace.items()}
    chosen = sorted(runs_by_trace, key=first_start.__getitem__)
    if trace_id is not None:
        chosen = [t for t in chosen if t.startswith(trace_id.lower())]
    if run_id is not None:
        chosen = [t for t in chosen if run_id in _run_ids(index, runs_by_trace[t])]
    matching = len(chosen)
    if limit > 0:
        chosen = chosen[-limit:]
    renderer = _Renderer(index)
    for trace in chosen:
        tree = Tree(Text(f"trace {v(trace)}", style="bold"))
        for run in sorted(runs_by_trace[trace], key=lambda s: s.start_unix_nano):
            renderer.add_run(tree, run)
        console.print(tree)
    for span in lifecycle:
        for event in span.events:
            if event.name == A.EVENT_TRANSITION:
                renderer.counts["transitions"] += 1
                console.print(_transition_text(event.attributes))
    other = len(index.by_id) - len(ours)
    if not runs_by_trace and not lifecycle:
        console.print(Text(f"no critic-guard runs in {v(path)}", style="yellow"))
    elif filtered and not matching:
        wanted = " and ".join(
            f"{flag} {v(value)}" for flag, value in (("--run", run_id), ("--trace-id", trace_id)) if value is not None
        )
        console.print(Text(f"no trace matches {wanted}", style="yellow"))
    if len(chosen) < matching:
        console.print(
            Text(
                f"showing the last {len(chosen)} of {matching} traces: --limit 0 shows all, --run ID or --trace-id ID "
                "picks one",
                style="yellow",
            )
        )
    if other:
        console.print(Text(f"{other} spans of other instrumentations not shown", style="dim"))
    if data.bad_lines:
        console.print(Text(_skipped_note(data), style="yellow"))
    c = renderer.counts
    return TraceSummary(
        traces=len(chosen),
        runs=c["runs"],
        shadow_runs=c["shadow_runs"],
        steps=c["steps"],
        verdicts=c["verdicts"],
        flags=c["flags"],
        interventions=c["interventions"],
        transitions=c["transitions"],
        resolved_fork_links=c["resolved"],
        other_spans=other,
        bad_lines=data.bad_lines,
        matching_traces=matching,
    )
