"""``critic-guard analyze`` and ``critic-guard power``: the statistics of a pilot from its cells or a pairs file, and
the tasks a conclusive pilot needs (docs/statistics.md). No agent runs; nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from critic_guard.cli.common import AsJson, Level, Seed
from critic_guard.cli_errors import fail
from critic_guard.pairs_io import PairsFileError, read_pairs
from critic_guard.render import render_detectable, render_report, render_sample_size
from critic_guard.stats import PairedCounts, analyze, verdict_detectable_effect, verdict_sample_size

__all__ = ["analyze_command", "power_command", "print_report"]


def _parse_cells(cells: tuple[str, str, str, str]) -> PairedCounts:
    values = []
    for name, text in zip(("N00", "N01", "N10", "N11"), cells, strict=True):
        try:
            values.append(int(text))
        except ValueError:
            fail(f"--cells: {name} must be a non-negative integer, got {text!r}")
    return PairedCounts(*values)


def print_report(counts: PairedCounts, level: float, seed: int, as_json: bool, title: str | None = None) -> None:
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
    print_report(counts, level, seed, as_json)


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
