"""``critic-guard report``: from a store or a pairs file, the files it writes, and its one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_support import one_line_error, store_with_two_guard_keys
from test_report_data import build_pilot_store
from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.store import SQLiteStore

runner = CliRunner()
PILOT_FILE = Path(__file__).resolve().parent.parent / "critic_guard" / "data" / "alfworld_pilot.jsonl"


@pytest.fixture(scope="module")
def pilot_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "pilot.db"
    build_pilot_store(path)
    return path


def test_report_from_store_writes_page_and_figures(pilot_db: Path, tmp_path: Path) -> None:
    html, out = tmp_path / "page" / "report.html", tmp_path / "figures"
    result = runner.invoke(app, ["report", "--store", f"sqlite:///{pilot_db}", "--html", str(html), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = ["estimates", "net_over_time", "by_step", "by_band", "critic_quality"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in names)
    assert all((out / f"{n}.png").read_bytes().startswith(b"\x89PNG") for n in names)
    page = html.read_text()
    assert "SQLite store pilot.db" in page and "demo-agent/demo-critic@1/" in page
    assert page.count("data:image/png;base64,") == 5 and "<script src" not in page and "<link" not in page
    assert result.stdout.splitlines() == [f"wrote {html}", *(f"wrote {out / n}.png" for n in names)]


def test_report_with_an_explicit_key(pilot_db: Path, tmp_path: Path) -> None:
    with SQLiteStore(pilot_db) as store:
        [key] = store.guard_keys()
    html = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--store", f"sqlite:///{pilot_db}", "--key", key, "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {html}"


def test_report_from_pairs_file(tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(PILOT_FILE), "--html", str(html)])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert "pairs file alfworld_pilot.jsonl" in page and "Do not deploy yet" in page
    assert page.count("a pairs file has no") == 3  # steps, score bands, critic quality say why they are empty


def test_report_errors(pilot_db: Path, tmp_path: Path) -> None:
    assert "either a pairs FILE or --store" in one_line_error(["report"])
    assert "either a pairs FILE or --store" in one_line_error(
        ["report", str(PILOT_FILE), "--store", f"sqlite:///{pilot_db}"]
    )
    assert "no SQLite store at" in one_line_error(["report", "--store", f"sqlite:///{tmp_path / 'none.db'}"])
    assert "unsupported store URL" in one_line_error(["report", "--store", "mysql://x"])
    assert "unknown guard key 'nope'; the store has: demo-agent/" in one_line_error(
        ["report", "--store", f"sqlite:///{pilot_db}", "--key", "nope"]
    )
    assert "no such file" in one_line_error(["report", str(tmp_path / "missing.jsonl")])
    two = store_with_two_guard_keys(tmp_path / "two.db")
    assert "2 guard keys, choose one with --key: a/" in one_line_error(["report", "--store", f"sqlite:///{two}"])
    key = _keys(two)[0]
    html = tmp_path / "open.html"  # only an open pair: the observe report says so (mode pilot without a judge)
    result = runner.invoke(app, ["report", "--store", f"sqlite:///{two}", "--key", key, "--html", str(html)])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert "Observed only: run a pilot next" in page and "1 pair is open" in page


def _keys(path: Path) -> list[str]:
    with SQLiteStore(path) as store:
        return store.guard_keys()


def _embedded(page: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="critic-guard-report">(.*?)</script>', page)
    assert match is not None
    parsed: dict[str, object] = json.loads(match.group(1))
    return parsed


@pytest.mark.slow
@pytest.mark.postgres
def test_report_from_postgres_equals_the_same_pilot_in_sqlite(
    postgres_schema_url: str, pilot_db: Path, tmp_path: Path
) -> None:
    from critic_guard.store.postgres import PostgresStore

    with PostgresStore(postgres_schema_url) as store:
        build_pilot_store(store)
    pages = {}
    for name, url in (("pg", postgres_schema_url), ("sqlite", f"sqlite:///{pilot_db}")):
        html = tmp_path / f"{name}.html"
        result = runner.invoke(app, ["report", "--store", url, "--html", str(html)])
        assert result.exit_code == 0, result.output
        pages[name] = html.read_text()
    assert _embedded(pages["pg"]) == _embedded(pages["sqlite"])
    assert "PostgreSQL store 127.0.0.1/" in pages["pg"] and postgres_schema_url not in pages["pg"]  # no credentials
