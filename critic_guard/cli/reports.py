"""``critic-guard report`` and ``critic-guard status``: the pilot report page of a store or a pairs file, and every
guard key's lifecycle state and evidence (docs/report.md). matplotlib loads only for ``report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from critic_guard.cli.common import AsJson, Level, Seed, StoreUrl
from critic_guard.cli.stores import open_cli_store, store_label, unreadable_store
from critic_guard.cli_errors import database_errors, fail
from critic_guard.config import DEFAULT_STORE_URL
from critic_guard.pairs_io import PairsFileError

__all__ = ["report_command", "status_command"]


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
            with open_cli_store(store_url) as store:
                guard_key = choose_guard_key(store, key, report_guard_keys(store))
                data = from_store(store, guard_key, source=store_label(store_url))
                if data.pairs:
                    built = build_report(data, level=level, seed=seed)
                else:  # runs only (mode observe), or a pilot whose pairs never completed: what the critic did
                    built = build_observed_report(gather_observed(store, guard_key, source=store_label(store_url)))
        written = built.write(html, out)
    except (PairsFileError, UnknownGuardKeyError, ValueError, OSError) as exc:
        fail(str(exc))
    except database_errors() as exc:
        assert store_url is not None  # only a store raises these
        fail(unreadable_store(store_url, exc))
    for path in written:
        typer.echo(f"wrote {path}")


def status_command(store_url: StoreUrl = DEFAULT_STORE_URL, as_json: AsJson = False) -> None:
    """Every guard key in the store: lifecycle state, evidence (pairs, cells, monitor wealth), last transition."""
    from critic_guard.report.status import render_status, status_rows

    with open_cli_store(store_url) as store:
        try:
            rows = status_rows(store)
        except database_errors() as exc:
            fail(unreadable_store(store_url, exc))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("no guard keys in this store yet")
    else:
        Console().print(render_status(rows), crop=False)  # a key wider than the terminal is soft-wrapped, not cut
