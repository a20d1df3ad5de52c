"""The ``critic-guard`` command line.

Each command is a thin function: parse options, delegate to a library module, render. Bad input (usage errors,
our own validation errors, unreadable files and stores) ends with one line on stderr and a documented exit code
(:mod:`critic_guard.cli_errors`), never a traceback; stored strings are shown as data, never as markup or terminal
control (:mod:`critic_guard.safe_text`). New commands register on :data:`app` the same way.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

from critic_guard._version import __version__
from critic_guard.cli_errors import FAILED, OneLineErrors, database_errors, exit_codes_epilog, fail
from critic_guard.config import DEFAULT_STORE_URL
from critic_guard.lifecycle import GuardState, LifecycleError
from critic_guard.pairs_io import PairsFileError, read_pairs
from critic_guard.render import render_detectable, render_report, render_sample_size
from critic_guard.safe_text import visible
from critic_guard.stats import PairedCounts, analyze, verdict_detectable_effect, verdict_sample_size
from critic_guard.store.base import Store, open_store, parse_store_url

if TYPE_CHECKING:
    from critic_guard.pilot import PilotSuite

app = typer.Typer(
    name="critic-guard",
    help="Decide with honest statistics whether a critic's interventions help your agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
    epilog=exit_codes_epilog(),
)

EXAMPLE_PILOT = "alfworld_pilot.jsonl"
# as critic_guard.telemetry.setup and .traceview (not imported here: they load the OTel SDK)
DEFAULT_TRACE_FILE = "critic_guard_traces.jsonl"
DEFAULT_TRACE_LIMIT = 20

Level = Annotated[float, typer.Option(help="Confidence level of the intervals and the verdict.")]
Seed = Annotated[int, typer.Option(help="Seed of the posterior Monte Carlo draws.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")]
TraceFileOption = Annotated[Path, typer.Option("--trace-file", help="OTLP/JSON lines trace file.")]
Concurrency = Annotated[int, typer.Option(help="Tasks run at the same time.")]
Tasks = Annotated[int | None, typer.Option(help="Run only the suite's first N tasks.", show_default=False)]


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"critic-guard {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    pass


def _parse_cells(cells: tuple[str, str, str, str]) -> PairedCounts:
    values = []
    for name, text in zip(("N00", "N01", "N10", "N11"), cells, strict=True):
        try:
            values.append(int(text))
        except ValueError:
            fail(f"--cells: {name} must be a non-negative integer, got {text!r}")
    return PairedCounts(*values)


def _print_report(counts: PairedCounts, level: float, seed: int, as_json: bool, title: str | None = None) -> None:
    try:
        report = analyze(counts, level=level, seed=seed)
    except ValueError as exc:
        fail(str(exc))
    except OverflowError:  # e.g. --cells 1 2 3 10**400: counts beyond any float
        fail(f"the counts are too large to analyse ({len(str(counts.n))} digits)")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console = Console()
    if title:
        console.print(title)
    console.print(render_report(report))


@app.command("analyze")
def analyze_command(
    file: Annotated[
        Path | None,
        typer.Argument(help="JSONL or CSV file of pairs (control and treatment outcomes).", show_default=False),
    ] = None,
    cells: Annotated[
        tuple[str, str, str, str] | None,
        typer.Option(metavar="N00 N01 N10 N11", help="The four cell counts instead of a file.", show_default=False),
    ] = None,
    level: Level = 0.95,
    seed: Seed = 0,
    as_json: AsJson = False,
) -> None:
    """Analyse a pilot: estimates, score interval, McNemar, posterior, power and a helps/harms/inconclusive verdict."""
    try:
        if file is not None and cells is None:
            counts = read_pairs(file)
        elif cells is not None and file is None:
            counts = _parse_cells(cells)
        else:
            fail("give either a pairs FILE or --cells N00 N01 N10 N11, not both and not neither")
    except (PairsFileError, ValueError, TypeError) as exc:
        fail(str(exc))
    _print_report(counts, level, seed, as_json)


DEMO_SUITE = "critic_guard_langgraph.demo:suite"
"""What ``critic-guard demo`` (and so ``make demo``) runs: the integration's simulated pilot."""


@app.command()
def demo(
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
        _print_report(counts, level, seed, as_json, title=title)
        return
    if importlib.util.find_spec(DEMO_SUITE.partition(".")[0]) is None:
        fail(
            "the live demo runs a LangGraph agent: pip install critic-guard-langgraph "
            "(or analyse the bundled paper pilot with `critic-guard demo --paper`)"
        )
    _pilot(DEMO_SUITE, store_url, trace_file, concurrency, tasks, seed, PilotMode.PILOT, level, as_json)


@app.command("power")
def power_command(
    discordant: Annotated[float, typer.Option(help="Expected share of tasks whose arms disagree.")],
    effect: Annotated[
        float | None, typer.Option(help="Net effect to detect; prints the tasks needed.", show_default=False)
    ] = None,
    tasks: Annotated[
        int | None, typer.Option(help="Pilot size; prints the minimum detectable effect.", show_default=False)
    ] = None,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    power_: Annotated[float, typer.Option("--power", help="Probability of detecting the effect.")] = 0.8,
) -> None:
    """Sample size for a net effect (--effect), or the smallest effect a pilot of --tasks can detect, for the
    verdict `analyze` gives (Tango interval and exact McNemar test; exact enumeration, Connor's approximation
    beyond 100,000 tasks)."""
    if (effect is None) == (tasks is None):
        fail("give either --effect (to get the tasks needed) or --tasks (to get the detectable effect)")
    try:
        if effect is not None:
            needed, method = verdict_sample_size(effect, discordant, alpha=alpha, power=power_)
            Console().print(render_sample_size(effect, discordant, alpha, power_, needed, method))
        elif tasks is not None:
            mde, method = verdict_detectable_effect(tasks, discordant, alpha=alpha, power=power_)
            Console().print(render_detectable(tasks, discordant, alpha, power_, mde, method))
    except ValueError as exc:
        fail(str(exc))
    except OverflowError:  # e.g. --effect 1e-300: the tasks needed exceed any float
        fail(f"--effect {effect:g} is too small to detect: the number of tasks needed is not finite")


@app.command("traces")
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


# ---- report, status, enable / disable (critic_guard.report) ---------------------------------------------------

StoreUrl = Annotated[str, typer.Option("--store", help="Store URL: sqlite:///path.db or postgresql://...")]


def _open_store(url: str, *, create: bool = False) -> Store:
    """Open a store; unless ``create``, a missing SQLite file is an error, not a new database. Whatever stops it
    from opening (not a database, a directory, read-only, a newer schema, an unreachable server) is one line."""
    try:
        backend, target = parse_store_url(url)
    except ValueError as exc:
        fail(str(exc))
    if backend == "sqlite" and target != ":memory:":
        if Path(target).is_dir():
            fail(f"the SQLite store {target!r} is a directory, not a database file")
        if not create and not Path(target).is_file():
            fail(f"no SQLite store at {target!r}")
    try:
        with _quiet_pool_retries():
            store = open_store(url)
    except Exception as exc:  # e.g. sqlite3's "file is not a database", psycopg's OperationalError: one line
        fail(f"cannot open the store {_store_label(url)}: {' '.join(str(exc).split())}")
    assert store is not None
    return store


@contextmanager
def _quiet_pool_retries() -> Iterator[None]:
    """psycopg's pool logs a warning per failed connection attempt while it retries; the one error line below says
    the same once, so those warnings are held back while the store opens."""
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool_log.setLevel(level)


def _unreadable_store(url: str, exc: BaseException) -> str:
    """The one line for a store that opened but could not be read or written (e.g. corrupted pages)."""
    return f"cannot use the store {_store_label(url)}: {' '.join(str(exc).split())}"


def _store_label(url: str) -> str:
    """How the page names its store: the SQLite file's name, or PostgreSQL's host and database (never a password)."""
    backend, target = parse_store_url(url)
    if backend == "sqlite":
        return f"SQLite store {Path(target).name}"
    parts = urlsplit(target)
    return f"PostgreSQL store {parts.hostname or 'localhost'}{parts.path}"


@app.command("report")
def report_command(
    file: Annotated[
        Path | None, typer.Argument(help="A pairs file (as `analyze` reads it) instead of --store.", show_default=False)
    ] = None,
    store_url: Annotated[
        str | None, typer.Option("--store", help="Store URL: sqlite:///path.db or postgresql://...", show_default=False)
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Guard key (default: the only one in the store).", show_default=False)
    ] = None,
    html: Annotated[Path, typer.Option("--html", help="Where to write the HTML page.")] = Path(
        "critic_guard_report.html"
    ),
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write each figure as DIR/<name>.png.", show_default=False)
    ] = None,
    level: Level = 0.95,
    seed: Seed = 0,
) -> None:
    """Write the pilot report: the decision and its certainty first, then every piece of evidence behind it.

    A guard key without completed pairs (mode observe) gets the observe report: flag rate, verdicts by step, score
    distribution and, once outcomes are recorded, the critic's AUROC and ECE.
    """
    try:
        from critic_guard.report.build import build_report  # loads matplotlib only for this command
    except ImportError as exc:
        fail(f"the report needs matplotlib: pip install 'critic-guard[plot]' ({exc})")
    from critic_guard.report.data import UnknownGuardKeyError, choose_guard_key, from_pairs_file, from_store
    from critic_guard.report.observed import gather_observed, report_guard_keys
    from critic_guard.report.observed_page import build_observed_report

    if (file is None) == (store_url is None):
        fail("give either a pairs FILE or --store URL, not both and not neither")
    try:
        if file is not None:
            built = build_report(from_pairs_file(file), level=level, seed=seed)
        else:
            assert store_url is not None
            with _open_store(store_url) as store:
                guard_key = choose_guard_key(store, key, report_guard_keys(store))
                data = from_store(store, guard_key, source=_store_label(store_url))
                if data.pairs:
                    built = build_report(data, level=level, seed=seed)
                else:  # runs only (mode observe), or a pilot whose pairs never completed: what the critic did
                    built = build_observed_report(gather_observed(store, guard_key, source=_store_label(store_url)))
        written = built.write(html, out)
    except (PairsFileError, UnknownGuardKeyError, ValueError, OSError) as exc:
        fail(str(exc))
    except database_errors() as exc:
        assert store_url is not None  # only a store raises these
        fail(_unreadable_store(store_url, exc))
    for path in written:
        typer.echo(f"wrote {path}")


@app.command("status")
def status_command(store_url: StoreUrl = DEFAULT_STORE_URL, as_json: AsJson = False) -> None:
    """Every guard key in the store: lifecycle state, evidence (pairs, cells, monitor wealth), last transition."""
    from critic_guard.report.status import render_status, status_rows

    with _open_store(store_url) as store:
        try:
            rows = status_rows(store)
        except database_errors() as exc:
            fail(_unreadable_store(store_url, exc))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no guard keys in this store yet")
    else:
        Console().print(render_status(rows), crop=False)  # a key wider than the terminal is soft-wrapped, not cut


Reason = Annotated[
    str | None, typer.Option("--reason", help="Why (recorded with the transition; required).", show_default=False)
]
TraceFile = Annotated[
    Path | None,
    typer.Option(
        "--trace-file", help="Also emit the transition event to this OTLP/JSON lines file.", show_default=False
    ),
]
ResetMonitor = Annotated[
    bool, typer.Option("--reset-monitor", help="Start fresh evidence (needed against a standing proof).")
]
GuardKey = Annotated[str, typer.Argument(help="The guard key (see `critic-guard status`).")]


def _override(key: str, state: GuardState, reason: str | None, store_url: str, trace_file: Path | None,
              reset_monitor: bool) -> None:  # fmt: skip
    from critic_guard.report.data import UnknownGuardKeyError
    from critic_guard.report.override import apply_override, otlp_configured, trace_transition

    if reason is None or not reason.strip():
        fail("--reason TEXT is required: it is recorded with the transition")
    with _open_store(store_url) as store:
        try:
            transition = apply_override(store, key, state, reason=reason, reset_monitor=reset_monitor)
        except (UnknownGuardKeyError, LifecycleError) as exc:
            hint = " (add --reset-monitor)" if "reset_monitor=True" in str(exc) else ""
            fail(f"{exc}{hint}")
        except database_errors() as exc:
            fail(_unreadable_store(store_url, exc))
    moved = f"{transition.from_state.value} -> {transition.to_state.value}"
    typer.echo(f"{visible(key)}: {moved} ({visible(transition.reason)})")
    if trace_file is not None or otlp_configured():
        try:
            trace_transition(transition, trace_file)
        except (ImportError, ValueError, OSError) as exc:  # recorded already: say so, and why it was not traced
            typer.echo(
                f"critic-guard: warning: the transition is recorded but was not traced: {visible(exc)}", err=True
            )


@app.command("enable")
def enable_command(
    key: GuardKey,
    reason: Reason = None,
    store_url: StoreUrl = DEFAULT_STORE_URL,
    trace_file: TraceFile = None,
    reset_monitor: ResetMonitor = False,
) -> None:
    """Enable intervention for a guard key by hand (recorded as a lifecycle transition with the reason)."""
    _override(key, GuardState.ENABLED, reason, store_url, trace_file, reset_monitor)


@app.command("disable")
def disable_command(
    key: GuardKey,
    reason: Reason = None,
    store_url: StoreUrl = DEFAULT_STORE_URL,
    trace_file: TraceFile = None,
    reset_monitor: ResetMonitor = False,
) -> None:
    """Disable intervention for a guard key by hand (recorded as a lifecycle transition with the reason)."""
    _override(key, GuardState.DISABLED, reason, store_url, trace_file, reset_monitor)


# ---- pilot (critic_guard.pilot) -------------------------------------------------------------------------------


class PilotMode(StrEnum):
    """What a pilot may do with its verdict (the guard's modes that run shadow branches)."""

    PILOT = "pilot"
    AUTO = "auto"


@app.command("pilot")
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
    _open_store(store_url, create=True).close()  # a store that cannot be opened and written fails here, in one line
    with configure_telemetry(file=trace_file) as handles:
        try:
            guard = loaded.guard(mode=mode.value, store=store_url, telemetry=handles.telemetry)
        except (ValueError, ConnectionError, OSError) as exc:  # e.g. the suite's guard options, an unreachable store
            fail(" ".join(str(exc).split()))
        except database_errors() as exc:
            fail(_unreadable_store(store_url, exc))
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
