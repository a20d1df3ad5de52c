"""The report in a real headless Chromium: it renders with no console errors and no network, and the first screen
(the screenshot) shows the decision in its colour.

Set ``CRITIC_GUARD_UPDATE_SCREENSHOT=1`` to also write the seeded store's screenshot to docs/images/report.png.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from browser import VIEWPORT, Chromium, find_chromium
from store_suite import make_run, make_step
from support import skip_or_fail
from test_report_data import build_pilot_store
from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.store import SQLiteStore

DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "report.png"
PILOT_FILE = Path(__file__).resolve().parent.parent / "critic_guard" / "data" / "alfworld_pilot.jsonl"
VERDICT_RGB = {"helps": (0x1B, 0x78, 0x37), "harms": (0xB2, 0x18, 0x2B), "inconclusive": (0x9A, 0x67, 0x00)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        skip_or_fail("Debian chromium is not installed (apt-get install -y chromium)")
        raise AssertionError("unreachable")  # skip_or_fail raises
    with Chromium(executable) as opened:
        yield opened


def _report(args: list[str], html: Path) -> Path:
    result = CliRunner().invoke(app, ["report", *args, "--html", str(html)])
    assert result.exit_code == 0, result.output
    return html


def _pixel(png: bytes, x: float, y: float) -> tuple[int, int, int]:
    image = np.asarray(matplotlib.image.imread(io.BytesIO(png), format="png"))
    red, green, blue = (round(float(v) * 255) for v in image[int(y), int(x), :3])
    return red, green, blue


def _check_first_screen(browser: Chromium, page: Path, headline: str) -> bytes:
    load = browser.load(page)
    assert load.console_errors == [], browser.log()
    assert load.failed_requests == []
    assert all(url.startswith(("file:", "data:")) for url in load.requests), load.requests  # self-contained
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    box = browser.evaluate(
        "(() => { const r = document.getElementById('decision').getBoundingClientRect();"
        " return {top: r.top, left: r.left, bottom: r.bottom, right: r.right}; })()"
    )
    assert box["top"] >= 0 and box["bottom"] <= VIEWPORT[1] and box["right"] <= VIEWPORT[0]  # on the first screen
    assert browser.evaluate("document.querySelector('#decision .headline').innerText") == headline
    verdict = browser.evaluate("document.getElementById('decision').dataset.verdict")
    embedded = browser.evaluate("JSON.parse(document.getElementById('critic-guard-report').textContent)")
    assert embedded["analysis"]["verdict"] == verdict
    png = browser.screenshot()
    assert png.startswith(b"\x89PNG")
    assert _pixel(png, box["left"] + 8, box["top"] + 8) == VERDICT_RGB[verdict]  # the decision's colour is visible
    return png


def test_store_report_renders_and_shows_the_decision(browser: Chromium, tmp_path: Path) -> None:
    store = tmp_path / "pilot.db"
    build_pilot_store(store)
    page = _report(["--store", f"sqlite:///{store}"], tmp_path / "report.html")
    png = _check_first_screen(browser, page, "Deploy the intervention")
    assert browser.evaluate("document.querySelectorAll('img').length") == 5
    assert browser.evaluate("document.querySelectorAll('.nodata').length") == 0
    if os.environ.get("CRITIC_GUARD_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(png)


def test_pairs_file_report_says_which_sections_have_no_data(browser: Chromium, tmp_path: Path) -> None:
    page = _report([str(PILOT_FILE)], tmp_path / "report.html")
    _check_first_screen(browser, page, "Do not deploy yet")
    assert browser.evaluate("document.querySelectorAll('img').length") == 2  # estimates and net over time
    missing = browser.evaluate("Array.from(document.querySelectorAll('.nodata')).map(e => e.innerText)")
    assert len(missing) == 6 and all(text for text in missing)
    # 482 more tasks: the exact power of the verdict's own rule (Connor's formula said 449)
    assert "482" in browser.evaluate("document.querySelector('#decision .next').innerText")


def test_observe_report_renders_and_says_to_pilot_next(browser: Chromium, tmp_path: Path) -> None:
    """A key with runs only (mode observe), outcomes recorded: the observe page with both of its figures."""
    path = tmp_path / "observe.db"
    with SQLiteStore(path) as store:
        for i in range(8):
            run = f"r{i}"
            store.add_run(make_run(run, started_at=1000.0 + i))
            for step in range(4):
                p_fail = 0.1 + 0.2 * step if i % 2 else 0.05 + 0.1 * step
                store.add_step(make_step(run, step, p_fail=p_fail, flagged=p_fail >= 0.6, reason="observe"))
            store.record_outcome(run, i % 2 == 0, recorded_at=2000.0)
    page = _report(["--store", f"sqlite:///{path}"], tmp_path / "observe.html")
    load = browser.load(page)
    assert load.console_errors == [] and load.failed_requests == [], browser.log()
    assert all(url.startswith(("file:", "data:")) for url in load.requests), load.requests
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.evaluate("document.querySelectorAll('img').length") == 2  # score distribution, critic quality
    assert browser.evaluate("document.querySelector('#decision .headline').innerText") == (
        "Observed only: run a pilot next"
    )
    embedded = browser.evaluate("JSON.parse(document.getElementById('critic-guard-report').textContent)")
    # failed runs score 0.1 0.3 0.5 0.7, successful ones 0.05 0.15 0.25 0.35: AUROC (1 + 3 + 4 + 4) / 16
    assert (embedded["kind"], embedded["runs"], embedded["flagged_steps"], embedded["auroc"]) == ("observe", 8, 4, 0.75)
    box = browser.evaluate("(() => { const r = document.getElementById('decision').getBoundingClientRect();"
                           " return {top: r.top, left: r.left, bottom: r.bottom}; })()")  # fmt: skip
    assert box["top"] >= 0 and box["bottom"] <= VIEWPORT[1]  # on the first screen
    assert _pixel(browser.screenshot(), box["left"] + 8, box["top"] + 8) == (0x44, 0x54, 0x6A)


def test_the_browser_check_sees_console_errors_and_requests(browser: Chromium, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>x</p><img src='missing.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    load = browser.load(page)
    assert any("boom" in e for e in load.console_errors)
    assert any("undefinedFunction" in e for e in load.console_errors)
    assert any(url.endswith("missing.png") for url in load.requests)
