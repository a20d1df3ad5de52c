"""``critic-guard traces FILE``: the runs, steps, verdicts, interventions and shadow links of a trace file, in the
terminal. It reads the file with the OpenTelemetry SDK and protobuf (the ``otlp`` extra), loaded only for this
command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from critic_guard.cli_errors import fail

__all__ = ["traces_command"]

# as critic_guard.telemetry.traceview (not imported here: it loads the OTel SDK)
DEFAULT_TRACE_LIMIT = 20


def traces_command(
    file: Annotated[Path, typer.Argument(help="An OTLP/JSON lines trace file (e.g. critic_guard_traces.jsonl).")],
    run: Annotated[
        str | None,
        typer.Option("--run", help="Only this run's trace and its shadow branches' traces.", show_default=False),
    ] = None,
    trace_id: Annotated[
        str | None, typer.Option("--trace-id", help="Only traces whose id starts with this.", show_default=False)
    ] = None,
    limit: Annotated[
        int, typer.Option(help="Show the most recent N matching traces; 0 shows all.", min=0)
    ] = DEFAULT_TRACE_LIMIT,
) -> None:
    """Show the runs, steps, verdicts, interventions and shadow links recorded in a trace file."""
    try:  # loads the OTel SDK and protobuf only for this command
        from critic_guard.telemetry.traceview import UnreadableTraceFileError, render_traces
    except ImportError as exc:
        fail(f"reading a trace file needs the `otlp` extra: pip install 'critic-guard[otlp]' ({exc})")

    try:
        render_traces(file, Console(), run_id=run, trace_id=trace_id, limit=limit)
    except IsADirectoryError:
        fail(f"cannot read trace file {str(file)!r}: it is a directory")
    except OSError as exc:
        fail(f"cannot read trace file {str(file)!r}: {exc.strerror or exc}")
    except UnreadableTraceFileError as exc:
        fail(str(exc))
