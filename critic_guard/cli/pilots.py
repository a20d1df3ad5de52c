"""``critic-guard pilot SUITE`` and ``critic-guard demo``: run a shadow pilot of a task suite (the core's runner,
critic_guard.pilot) into a store and a trace file, show its progress and print the decision; a rerun resumes
(docs/pilot.md). ``demo`` runs the integration's simulated suite, or ``--paper`` analyses the bundled paper pilot.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
from contextlib import nullcontext
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from critic_guard.cli.analysis import print_report
from critic_guard.cli.common import (
    DEFAULT_TRACE_FILE,
    AsJson,
    Concurrency,
    Level,
    StoreUrl,
    Tasks,
    TraceFileOption,
)
from critic_guard.cli.stores import open_cli_store, unreadable_store
from critic_guard.cli_errors import FAILED, database_errors, fail
from critic_guard.config import DEFAULT_STORE_URL
from critic_guard.pairs_io import read_pairs
from critic_guard.safe_text import visible
from critic_guard.store.base import parse_store_url

if TYPE_CHECKING:
    from critic_guard.pilot import PilotSuite

__all__ = ["PilotMode", "demo_command", "pilot_command"]

EXAMPLE_PILOT = "alfworld_pilot.jsonl"
DEMO_SUITE = "critic_guard_langgraph.demo:suite"
"""What ``critic-guard demo`` (and so ``make demo``) runs: the integration's simulated pilot."""


class PilotMode(StrEnum):
    """What a pilot may do with its verdict (the guard's modes that run shadow branches)."""

    PILOT = "pilot"
    AUTO = "auto"


def demo_command(
    paper: Annotated[
        bool,
        typer.Option("--paper", help="Analyse the bundled paper pilot instead (ALFWorld, 150 pairs; no agent is run)."),
    ] = False,
    store_url: StoreUrl = DEFAULT_STORE_URL,
    trace_file: TraceFileOption = Path(DEFAULT_TRACE_FILE),
    concurrency: Concurrency = 4,
    tasks: Tasks = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated tasks and of the posterior draws.")] = 0,
    level: Level = 0.95,
    as_json: AsJson = False,
) -> None:
    """Run the live demo (what `make demo` runs): a shadow pilot of a guarded create_agent agent on 150 simulated
    tasks, ending with the decision. Rerun it to resume. --paper analyses the bundled paper pilot instead.
    """
    if paper:
        example = resources.files("critic_guard") / "data" / EXAMPLE_PILOT
        with resources.as_file(example) as path:
            counts = read_pairs(path)
        title = (
            "Example pilot: ALFWorld with Qwen-3-8B, 150 pairs consistent with the totals reported in "
            "arXiv 2602.03338 (the paper's verdict: intervene)."
        )
        print_report(counts, level, seed, as_json, title=title)
        return
    if importlib.util.find_spec(DEMO_SUITE.partition(".")[0]) is None:
        fail(
            "the live demo runs a LangGraph agent: pip install critic-guard-langgraph "
            "(or analyse the bundled paper pilot with `critic-guard demo --paper`)"
        )
    _pilot(DEMO_SUITE, store_url, trace_file, concurrency, tasks, seed, PilotMode.PILOT, level, as_json)


def pilot_command(
    suite: Annotated[str, typer.Argument(help="The suite's entry point, module:function, returning a PilotSuite.")],
    store_url: StoreUrl = DEFAULT_STORE_URL,
    trace_file: TraceFileOption = Path(DEFAULT_TRACE_FILE),
    concurrency: Concurrency = 4,
    tasks: Tasks = None,
    seed: Annotated[int, typer.Option(help="Passed to the suite (if it takes one) and to the posterior draws.")] = 0,
    mode: Annotated[
        PilotMode, typer.Option(help="pilot: measure only; auto: the lifecycle may enable or disable.")
    ] = PilotMode.PILOT,
    level: Level = 0.95,
    as_json: AsJson = False,
    server: Annotated[
        str | None,
        typer.Option(
            help="Run every task on a deployed agent on LangGraph's Agent Server at this URL (its guard must write "
            "to --store; docs/pilot.md).",
            show_default=False,
        ),
    ] = None,
    assistant: Annotated[
        str | None, typer.Option(help="With --server: the assistant (or graph id) to run.", show_default=False)
    ] = None,
) -> None:
    """Run a shadow pilot of a task suite and print the decision; rerun the same command to resume after a crash."""
    if (server is None) != (assistant is None):
        fail("--server and --assistant go together: the Agent Server's URL and the assistant to run there")
    _pilot(suite, store_url, trace_file, concurrency, tasks, seed, mode, level, as_json, server=(server, assistant))


def _on_server(suite: PilotSuite, url: str, assistant: str) -> PilotSuite:
    """The suite with its tasks run on the Agent Server (the integration's adapter; the core never imports it)."""
    try:
        server_pilot = importlib.import_module("critic_guard_langgraph.server_pilot")
    except ImportError as exc:
        fail(f"--server needs the LangGraph integration: pip install critic-guard-langgraph ({exc})")
    return dataclasses.replace(suite, adapter=server_pilot.ServerPilot(url, assistant))


def _pilot(
    suite: str,
    store_url: str,
    trace_file: Path,
    concurrency: int,
    tasks: int | None,
    seed: int,
    mode: PilotMode,
    level: float,
    as_json: bool,
    *,
    server: tuple[str | None, str | None] = (None, None),
) -> None:
    """The pilot run behind ``pilot`` and ``demo``; ``server``: (URL, assistant) to run the tasks on."""
    import asyncio

    from critic_guard.pilot import StoreUnavailableError, SuiteError, load_suite, run_pilot
    from critic_guard.pilot_view import RichProgress, render_pilot

    try:
        from critic_guard.telemetry.setup import configure_telemetry
    except ImportError as exc:  # the SDK comes with the `otlp` extra; the message says so
        fail(str(exc))

    if concurrency < 1:
        fail(f"--concurrency must be >= 1, got {concurrency}")
    if tasks is not None and tasks < 1:
        fail(f"--tasks must be >= 1, got {tasks}")
    if trace_file.is_dir() or not trace_file.parent.is_dir():
        where = "is a directory" if trace_file.is_dir() else f"its directory {str(trace_file.parent)!r} does not exist"
        fail(f"--trace-file {str(trace_file)!r}: {where}")
    try:
        parse_store_url(store_url)
        loaded = load_suite(suite, seed=seed)
    except (SuiteError, ValueError) as exc:
        fail(str(exc))
    url, assistant = server
    if url is not None and assistant is not None:
        loaded = _on_server(loaded, url, assistant)
    open_cli_store(store_url, create=True).close()  # a store that cannot be opened and written fails here, in one line
    with configure_telemetry(file=trace_file) as handles:
        try:
            guard = loaded.guard(mode=mode.value, store=store_url, telemetry=handles.telemetry)
        except (ValueError, ConnectionError, OSError) as exc:  # e.g. the suite's guard options, an unreachable store
            fail(" ".join(str(exc).split()))
        except database_errors() as exc:
            fail(unreadable_store(store_url, exc))
        progress = None if as_json else RichProgress()
        with guard, progress or nullcontext():
            pilot = run_pilot(
                loaded, guard, concurrency=concurrency, limit=tasks, level=level, seed=seed, progress=progress
            )
            try:
                result = asyncio.run(pilot)
            except StoreUnavailableError as exc:
                fail(f"the store stayed unavailable: {exc}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        Console().print(render_pilot(result))
    if not result.ok:  # failed tasks or lost writes: named above; a rerun runs those tasks again
        failed = ", ".join(sorted(result.tally.failures)) or "none"
        lost = result.lost_writes
        message = f"critic-guard: error: pilot incomplete: failed tasks: {failed}; lost writes: {lost}"
        typer.echo(visible(message), err=True)
        raise typer.Exit(FAILED)
