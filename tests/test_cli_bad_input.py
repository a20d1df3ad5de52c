"""Every bad input to the command line is one line on stderr and a documented exit code, never a traceback
(docs/report.md, "Command line"): stores that are not databases, of a newer schema, directories, read-only or
with corrupted pages; trace files cut inside a UTF-8 character, not UTF-8, nested too deeply or out of range;
pairs files nested too deeply or with a field over 128 KiB; an effect too small to size; usage errors."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import one_line_error
from test_report_data import build_pilot_store
from test_telemetry_file import write_pilot
from typer.testing import CliRunner

from critic_guard import __version__
from critic_guard.cli import app
from critic_guard.cli_errors import EXIT_CODES, INTERNAL_ERROR, USAGE_ERROR
from critic_guard.store import SQLiteStore

runner = CliRunner()
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a pilot that got past its checks would write its default files here


# ---- pilot: stores it cannot use -------------------------------------------------------------------------------


def _pilot(store: Path) -> list[str]:
    return ["pilot", "test_pilot_core:cli_suite", "--store", f"sqlite:///{store}"]


def test_pilot_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("meeting notes, not a database\n" * 200)
    line = one_line_error(_pilot(path))
    assert line == "critic-guard: error: cannot open the store SQLite store notes.db: file is not a database"
    assert path.read_text().startswith("meeting notes")  # untouched


def test_pilot_on_a_store_of_a_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    line = one_line_error(_pilot(path))
    assert "written by a newer critic-guard (schema version 99" in line and "upgrade critic-guard" in line


def test_pilot_on_a_directory(tmp_path: Path) -> None:
    (tmp_path / "store.db").mkdir()
    line = one_line_error(_pilot(tmp_path / "store.db"))
    assert line.endswith("store.db' is a directory, not a database file")


def _without_file_permission_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that
    even root obeys file modes (the test suite may run as root, which otherwise writes read-only files)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drops a Linux capability when run as root")
def test_pilot_on_a_read_only_store(tmp_path: Path) -> None:
    path = tmp_path / "frozen.db"
    SQLiteStore(path).close()
    before = path.read_bytes()
    path.chmod(0o444)
    tmp_path.chmod(0o555)  # no journal or WAL file beside it either
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from critic_guard.cli import app; app()", *_pilot(path)],
            capture_output=True,
            text=True,
            cwd=TESTS,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])},
            preexec_fn=_without_file_permission_override if os.geteuid() == 0 else None,
            timeout=120,
        )
    finally:
        tmp_path.chmod(0o755)
    assert result.returncode == USAGE_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line == (
        "critic-guard: error: cannot open the store SQLite store frozen.db: attempt to write a readonly database"
    )
    assert path.read_bytes() == before


# ---- traces: lines that cannot be read ---------------------------------------------------------------------------


def _traces(path: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["traces", str(path)], env={"COLUMNS": "200"})
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_traces_with_a_last_line_cut_inside_a_utf8_character(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    good_lines = len(path.read_bytes().splitlines())
    torn = '{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"Zürich'.encode()
    path.write_bytes(path.read_bytes() + torn[: torn.index(b"\xc3") + 1])  # stops after the first byte of "ü"
    code, out, err = _traces(path)
    assert (code, err) == (0, "")
    assert "production run run-1" in out and "forked from production run run-1 step 2" in out  # earlier lines
    assert f"skipped 1 unreadable line: {good_lines + 1} (cut short, e.g. by a crash mid-write)" in out


def test_traces_with_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], b'{"resourceSpans": "\xff\xfe"}\n', *lines[1:]]))
    code, out, err = _traces(path)
    assert (code, err) == (0, "")
    assert "production run run-1" in out and "skipped 1 unreadable line: 2 (not UTF-8)" in out


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("[" * 100_000 + "]" * 100_000 + "\n", "JSON nested too deeply"),
        (
            json.dumps(
                {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab" * 16, "spanId": "cd" * 8}]}]}]}
            ).replace('"cdcdcdcdcdcdcdcd"', '"cdcdcdcdcdcdcdcd", "startTimeUnixNano": 1e999')
            + "\n",
            "a number out of range",
        ),
    ],
    ids=["deeply-nested", "timestamp-1e999"],
)
def test_traces_on_a_file_with_no_readable_line(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    line = one_line_error(["traces", str(path)])
    assert line == f"critic-guard: error: {path} has no readable OTLP/JSON line; skipped 1 unreadable line: 1 ({why})"


def test_traces_skips_a_deeply_nested_and_an_out_of_range_line_among_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_pilot(path)
    with path.open("a") as handle:
        handle.write("[" * 100_000 + "]" * 100_000 + "\n")
        handle.write('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ab","spanId":"cd",')
        handle.write('"startTimeUnixNano":1e999}]}]}]}\n')
    n = len(path.read_bytes().splitlines())
    code, out, err = _traces(path)
    assert (code, err) == (0, "")
    assert "production run run-1" in out
    assert f"skipped 2 unreadable lines: {n - 1} (JSON nested too deeply), {n} (a number out of range)" in out


def test_traces_on_a_directory(tmp_path: Path) -> None:
    assert one_line_error(["traces", str(tmp_path)]).endswith("it is a directory")


# ---- analyze, power --------------------------------------------------------------------------------------------


def test_analyze_a_deeply_nested_json_pairs_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"control": true, "treatment": false}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    line = one_line_error(["analyze", str(path)])
    assert line == f"critic-guard: error: {path}:2: JSON nested too deeply (a pair is one flat object)"


def test_analyze_a_csv_field_over_128_kib(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("control,treatment\n1,0\n1," + "0" * (129 * 1024) + "\n")
    line = one_line_error(["analyze", str(path)])
    assert line.startswith(f"critic-guard: error: {path}:3: not valid CSV (field larger than field limit")


def test_power_for_an_effect_too_small_to_size() -> None:
    line = one_line_error(["power", "--discordant", "0.3", "--effect", "1e-300"])
    assert line.endswith("error: --effect 1e-300 is too small to detect: the number of tasks needed is not finite")


# ---- report and status on a store with corrupted pages ---------------------------------------------------------


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pilot store whose pages after the first (the header and schema) are overwritten with garbage."""
    path = tmp_path_factory.mktemp("corrupt") / "pilot.db"
    build_pilot_store(path, tasks=60)
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * page_size
    for page in range(2, len(data) // page_size, 2):
        data[page * page_size : page * page_size + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    return path


def test_report_on_a_store_with_corrupted_pages(corrupted: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pilot.db"
    shutil.copyfile(corrupted, copy)
    line = one_line_error(["report", "--store", f"sqlite:///{copy}", "--html", str(tmp_path / "r.html")])
    assert line.startswith("critic-guard: error: cannot ")
    assert "SQLite store pilot.db" in line and "malformed" in line
    assert not (tmp_path / "r.html").exists()


def test_status_on_a_store_with_corrupted_pages(corrupted: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pilot.db"
    shutil.copyfile(corrupted, copy)
    line = one_line_error(["status", "--store", f"sqlite:///{copy}"])
    assert "SQLite store pilot.db" in line and "malformed" in line


# ---- usage errors, --version, help -----------------------------------------------------------------------------


def test_a_usage_error_is_one_line_with_a_pointer_to_help() -> None:
    line = one_line_error(["power", "--discordant", "lots"])
    assert line.startswith("critic-guard: error: Invalid value for '--discordant'")
    assert line.endswith("(see 'critic-guard power --help')")
    assert one_line_error(["status", "--no-such-option"]).startswith("critic-guard: error: No such option")


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"critic-guard {__version__}\n")


def test_help_documents_the_exit_codes_and_pilot_defaults() -> None:
    top = " ".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in top
    pilot = " ".join(runner.invoke(app, ["pilot", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "[default: sqlite:///critic_guard.db]" in pilot and "[default: critic_guard_traces.jsonl]" in pilot
    assert "Store URL ." not in pilot and "pilot|auto" in pilot
    traces = " ".join(runner.invoke(app, ["traces", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "Show the most recent N matching traces; 0 shows all. [default: 20]" in traces


def test_analyze_counts_beyond_any_float() -> None:
    line = one_line_error(["analyze", "--cells", "1", "2", "3", str(10**400)])
    assert line == "critic-guard: error: the counts are too large to analyse (401 digits)"


def test_pilot_with_a_trace_file_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "t.jsonl"
    line = one_line_error(["pilot", "test_pilot_core:cli_suite", "--trace-file", str(missing)])
    assert line.endswith(f"--trace-file {str(missing)!r}: its directory {str(missing.parent)!r} does not exist")
    assert not (tmp_path / "critic_guard.db").exists()  # refused before anything ran


@pytest.mark.slow
def test_an_unreachable_postgresql_store_is_one_line_without_the_password() -> None:
    line = one_line_error(["status", "--store", "postgresql://guard:s3cret@127.0.0.1:1/pilots"])
    assert line.startswith("critic-guard: error: cannot open the store PostgreSQL store 127.0.0.1/pilots: ")
    assert "s3cret" not in line


def test_an_unexpected_error_is_one_line_with_exit_code_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from critic_guard.cli import analysis

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug\nover two lines \x1b[2J")

    monkeypatch.setattr(analysis, "analyze", broken)
    line = one_line_error(["analyze", "--cells", "1", "2", "3", "4"], code=INTERNAL_ERROR)
    assert line == (
        "critic-guard: internal error: RuntimeError: a bug over two lines \\x1b[2J "
        "(a bug; CRITIC_GUARD_DEBUG=1 shows the traceback)"
    )
    debug = runner.invoke(app, ["analyze", "--cells", "1", "2", "3", "4"], env={"CRITIC_GUARD_DEBUG": "1"})
    assert isinstance(debug.exception, RuntimeError) and str(debug.exception).startswith("a bug")


def test_a_bad_suite_leaves_no_store_behind(tmp_path: Path) -> None:
    assert "cannot import suite module 'no_such_suite'" in one_line_error(["pilot", "no_such_suite:x"])
    assert list(tmp_path.iterdir()) == []
