"""The ``critic-guard`` Typer app and the options several commands share.

Why a module of its own: every command module registers on this one app (critic_guard/cli/__init__.py lists them in
``--help`` order) and takes the same option types, so ``--level``, ``--json`` or ``--store`` read the same in every
command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from critic_guard._version import __version__
from critic_guard.cli_errors import OneLineErrors, exit_codes_epilog

__all__ = [
    "DEFAULT_TRACE_FILE",
    "AsJson",
    "Concurrency",
    "Level",
    "Seed",
    "StoreUrl",
    "Tasks",
    "TraceFileOption",
    "app",
]

app = typer.Typer(
    name="critic-guard",
    help="Decide with honest statistics whether a critic's interventions help your agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
    epilog=exit_codes_epilog(),
)

# as critic_guard.telemetry.setup (not imported here: it loads the OTel SDK)
DEFAULT_TRACE_FILE = "critic_guard_traces.jsonl"

Level = Annotated[float, typer.Option(help="Confidence level of the intervals and the verdict.")]
Seed = Annotated[int, typer.Option(help="Seed of the posterior Monte Carlo draws.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")]
TraceFileOption = Annotated[Path, typer.Option("--trace-file", help="OTLP/JSON lines trace file.")]
Concurrency = Annotated[int, typer.Option(help="Tasks run at the same time.")]
Tasks = Annotated[int | None, typer.Option(help="Run only the suite's first N tasks.", show_default=False)]
StoreUrl = Annotated[str, typer.Option("--store", help="Store URL: sqlite:///path.db or postgresql://...")]


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
