"""The ``critic-guard`` command line.

Each command is a thin function: parse options, delegate to a library module, render. Bad input (our own
validation errors, unreadable files) ends with one line on stderr and exit code 2, never a traceback. New commands
register on :data:`app` the same way.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from critic_guard.pairs_io import PairsFileError, read_pairs
from critic_guard.render import render_detectable, render_report, render_sample_size
from critic_guard.stats import PairedCounts, analyze, mcnemar_sample_size, minimum_detectable_effect

app = typer.Typer(
    name="critic-guard",
    help="Decide with honest statistics whether a critic's interventions help your agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXAMPLE_PILOT = "alfworld_pilot.jsonl"
USAGE_ERROR = 2

Level = Annotated[float, typer.Option(help="Confidence level of the intervals and the verdict.")]
Seed = Annotated[int, typer.Option(help="Seed of the posterior Monte Carlo draws.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")]


def fail(message: str) -> NoReturn:
    """Print one error line on stderr and exit with the usage-error code."""
    typer.echo(f"critic-guard: error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


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


@app.command()
def demo(level: Level = 0.95, seed: Seed = 0, as_json: AsJson = False) -> None:
    """Analyse the bundled example pilot (ALFWorld, Qwen-3-8B, 150 pairs reconstructed from the paper's totals)."""
    example = resources.files("critic_guard") / "data" / EXAMPLE_PILOT
    with resources.as_file(example) as path:
        counts = read_pairs(path)
    title = (
        "Example pilot: ALFWorld with Qwen-3-8B, 150 pairs consistent with the totals reported in "
        "arXiv 2602.03338 (the paper's verdict: intervene)."
    )
    _print_report(counts, level, seed, as_json, title=title)


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
    """Sample size for a net effect (--effect), or the smallest effect a pilot of --tasks can detect."""
    if (effect is None) == (tasks is None):
        fail("give either --effect (to get the tasks needed) or --tasks (to get the detectable effect)")
    try:
        if effect is not None:
            needed = mcnemar_sample_size(effect, discordant, alpha=alpha, power=power_)
            Console().print(render_sample_size(effect, discordant, alpha, power_, needed))
        elif tasks is not None:
            mde = minimum_detectable_effect(tasks, discordant, alpha=alpha, power=power_)
            Console().print(render_detectable(tasks, discordant, alpha, power_, mde))
    except ValueError as exc:
        fail(str(exc))


@app.command("traces")
def traces_command(
    file: Annotated[Path, typer.Argument(help="An OTLP/JSON lines trace file (e.g. critic_guard_traces.jsonl).")],
) -> None:
    """Show the runs, steps, verdicts, interventions and shadow links recorded in a trace file."""
    from critic_guard.telemetry import render_traces  # loads the OTel SDK and protobuf only for this command

    try:
        render_traces(file, Console())
    except OSError as exc:
        fail(f"cannot read trace file {str(file)!r}: {exc.strerror or exc}")
