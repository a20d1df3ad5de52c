"""Stored strings reach the operator as data (docs/report.md, "Command line"): ``status``, ``traces`` and
``report`` never interpret rich markup (a reason ``see [/var/log/app.log]`` used to crash ``status``; ``[link=...]``
became a hyperlink), show control characters escaped (an ESC sequence in a reason or an agent name used to reach
the terminal), escape HTML, and ``status`` shows the whole guard key (what ``disable KEY`` takes) at any width."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_report_data import build_pilot_store
from test_telemetry_file import write_pilot
from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.report.data import PairPoint, ReportData
from critic_guard.report.figures import label_heights, rates_figure
from critic_guard.report.html import render_html
from critic_guard.report.numbers import compute
from critic_guard.safe_text import visible
from critic_guard.telemetry import attributes as A

runner = CliRunner()

MARKUP = "see [/var/log/app.log] and [link=https://evil.example]the runbook[/link] [bold]now[/]"
TERMINAL_CONTROL = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil"
SHOWN_CONTROL = "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eevil"
HTML = "<script>alert(1)</script> & co"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("data") / "pilot.db"
    return path, build_pilot_store(path, tasks=60)


@pytest.fixture
def pilot(built: tuple[Path, str], tmp_path: Path) -> tuple[str, str]:
    source, key = built
    shutil.copyfile(source, tmp_path / "pilot.db")
    return f"sqlite:///{tmp_path / 'pilot.db'}", key


def _ok(args: list[str], columns: int = 200, colour: bool = False) -> str:
    env = {"COLUMNS": str(columns), **({"FORCE_COLOR": "1"} if colour else {})}
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def _no_terminal_control(out: str) -> None:
    assert "\x1b]" not in out  # no OSC: window title, hyperlink (OSC 8)
    assert "\x1b[2J" not in out and "\x07" not in out and "\x9b" not in out and "\u202e" not in out


def test_visible_escapes_control_characters_and_keeps_text() -> None:
    assert visible(TERMINAL_CONTROL) == SHOWN_CONTROL
    assert visible("line\nbreak\ttab\u2028") == "line\\nbreak\\ttab\\u2028"
    assert visible("Zürich [b]x[/b] <i> \u00a0日本") == "Zürich [b]x[/b] <i> \u00a0日本"
    assert visible(None) == "" and visible(3) == "3"


@pytest.mark.parametrize("colour", [False, True], ids=["plain", "terminal-colours"])
def test_status_shows_a_reason_with_markup_and_control_characters_as_data(pilot: tuple[str, str], colour: bool) -> None:
    url, key = pilot
    reason = f"{MARKUP} {TERMINAL_CONTROL}"
    moved = _ok(["disable", key, "--reason", reason, "--store", url], colour=colour)
    assert moved.startswith(f"{key}: ") and moved.endswith(f" -> disabled ({MARKUP} {SHOWN_CONTROL})\n")
    out = _ok(["status", "--store", url], colour=colour)
    _no_terminal_control(out)
    flat = " ".join(out.split())
    if colour:  # colours are fine; the reason itself must come through literally, brackets and all
        assert "\x1b[" in out
    assert MARKUP in flat or MARKUP in "".join(out.split("\x1b[3m")).replace("\x1b[0m", "")
    assert SHOWN_CONTROL in out
    [row] = json.loads(_ok(["status", "--store", url, "--json"]))
    assert row["last_transition"]["reason"] == reason  # stored and exported as it was given


@pytest.mark.parametrize("columns", [80, 200])
def test_status_never_cuts_the_guard_key(tmp_path: Path, columns: int) -> None:
    path = tmp_path / "long.db"
    key = build_pilot_store(path, tasks=40, agent_name="customer-support-agent-" + "with-a-long-name-" * 6)
    assert len(key) > 130
    out = _ok(["status", "--store", f"sqlite:///{path}"], columns=columns)
    assert key in out.splitlines()  # on a line of its own, whole: copy it into `disable KEY`
    assert "…" not in out


def test_traces_show_stored_names_and_rationales_as_data(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    hostile = f"{MARKUP} {TERMINAL_CONTROL}"
    encoded = json.dumps(hostile)[1:-1]
    text = path.read_text().replace("support-bot", encoded).replace("benefit proven", encoded)
    path.write_text(text)
    out = _ok(["traces", str(path)], colour=True)
    _no_terminal_control(out)
    plain = _ok(["traces", str(path)])
    assert f"agent={MARKUP} {SHOWN_CONTROL} arm=control" in plain
    assert f"lifecycle gk-1: pilot -> enabled ({MARKUP} {SHOWN_CONTROL})" in plain


def test_traces_filters_and_default_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    lines = path.read_text().splitlines()
    # a second pilot pair in the same file, under other run and trace ids (a and b repeated)
    other = [
        line.replace("run-1", "run-2") for line in lines if all(s["name"] != A.SPAN_LIFECYCLE for s in _spans(line))
    ]
    ids = sorted({s["traceId"] for line in other for s in _spans(line)})
    assert len(ids) == 2
    for letter, trace_id in zip("ab", ids, strict=True):
        other = [line.replace(trace_id, letter * 32) for line in other]
    path.write_text("\n".join(lines + other) + "\n")

    everything = _ok(["traces", str(path)])
    assert "production run run-1" in everything and "production run run-2" in everything
    assert "lifecycle gk-1: pilot -> enabled" in everything and "showing the last" not in everything

    one_run = _ok(["traces", str(path), "--run", "run-2"])
    assert "production run run-2" in one_run and "forked from production run run-2 step 2" in one_run
    assert "run-1" not in one_run and "lifecycle" not in one_run

    by_id = _ok(["traces", str(path), "--trace-id", "b" * 8])
    assert [line for line in by_id.splitlines() if line.startswith("trace ")] == [f"trace {'b' * 32}"]

    last = _ok(["traces", str(path), "--limit", "1"])
    assert "showing the last 1 of 4 traces: --limit 0 shows all" in last
    assert "production run run-1" not in last

    none = _ok(["traces", str(path), "--run", "run-9"])
    assert "no trace matches --run run-9" in none


def _spans(line: str) -> list[dict[str, str]]:
    request = json.loads(line)
    return [s for r in request.get("resourceSpans", []) for ss in r["scopeSpans"] for s in ss["spans"]]


def test_report_page_escapes_stored_strings(pilot: tuple[str, str], tmp_path: Path) -> None:
    url, key = pilot
    reason = f"{HTML} {TERMINAL_CONTROL}"
    _ok(["disable", key, "--reason", reason, "--store", url])
    page_path = tmp_path / "r.html"
    _ok(["report", "--store", url, "--html", str(page_path)])
    page = page_path.read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co " + SHOWN_CONTROL in page
    assert "\x1b" not in page and "\u202e" not in page


def test_transition_labels_take_turns_when_close() -> None:
    top, low = 0.97, 0.47
    assert label_heights([10, 200, 400], 500) == [top, top, top]
    assert label_heights([10, 12, 30, 300], 500) == [top, low, top, top]
    assert label_heights([50, 50], 100) == [top, low]
    assert label_heights([10, 12, 13, 14], 500) == [top, low, top, low]  # crowded: the level used longest ago


def test_n_a_stands_inside_the_axes_where_the_bar_would_be() -> None:
    import matplotlib.pyplot as plt

    points = [_point(True, True, 3), _point(True, False, 3), _point(False, True, 5)]  # step 5: no control success
    numbers = compute(ReportData("rows", "gk", tuple(points)))
    fig = rates_figure(numbers.by_step, "step")
    try:
        [ax] = fig.axes
        marks = [t for t in ax.texts if t.get_text() == "n/a"]
        low, high = ax.get_xlim()
        # step 3 has no control failure (no r), step 5 no control success (no d): each n/a where its bar would be
        assert [m.get_position()[0] for m in marks] == pytest.approx([-0.19, 1.19])
        assert all(low < m.get_position()[0] < high for m in marks)
    finally:
        plt.close(fig)


def _point(control: bool, treatment: bool, step: int) -> PairPoint:
    return PairPoint(control, treatment, True, step, 0.8)


def test_undefined_numbers_and_step_advice_are_in_words(tmp_path: Path) -> None:
    out = _ok(["analyze", "--cells", "5", "0", "0", "5"])
    assert "d/r (disruption rate over recovery rate): " in out and "d_over_r" not in out
    assert "the paper's rule on point estimates (p > p_star): " in out and "point_rule_intervene" not in out
    # every flagged pair is a disruption: no step cut-off makes intervening help, and the page must not say it does
    harmful = [_point(True, False, step) for step in (1, 1, 2, 3, 3, 4)] + [_point(True, True, 2)] * 4
    data = ReportData("rows", "gk", tuple(harmful))
    page = render_html(data, compute(data), {})
    assert "The data support acting" not in page
    assert "No cut-off by step of first flag makes the observed net positive" in page
    shown = re.sub(r"<[^>]+>", "", page[: page.index('<script type="application/json"')])  # keys stay in tags
    assert "d/r (disruption rate over recovery rate): " in shown
    assert "d_over_r" not in shown and "point_rule_intervene" not in shown


def test_the_cli_defaults_are_the_libraries() -> None:
    from critic_guard.cli import common, traces
    from critic_guard.telemetry import setup, traceview

    assert common.DEFAULT_TRACE_FILE == setup.DEFAULT_TRACE_FILE
    assert traces.DEFAULT_TRACE_LIMIT == traceview.DEFAULT_TRACE_LIMIT
