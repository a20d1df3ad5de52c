"""Crash and resume for real: ``critic-guard pilot`` in a subprocess, killed with SIGKILL mid-pilot, then rerun.

The gated suite (``pilot_suites.gated_suite``) holds tasks t04 and t05 at their judge, with their pairs open, until
a gate file exists; the test waits (bounded) until both are held, kills the process, opens the gate and reruns the
same command. Its counts must equal those of an uninterrupted run of the same suite: no pair lost, none counted
twice, the two interrupted pairs excluded as abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pilot_suites import mixed_suite

from critic_guard.pilot import ABANDONED_REASON, run_pilot
from critic_guard.store import PairStatus, PilotTaskStatus, SQLiteStore

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "critic-guard")
WAIT_S = 60.0


def command(spec: str, tmp_path: Path, name: str) -> list[str]:
    store = f"sqlite:///{tmp_path / f'{name}.db'}"
    trace = str(tmp_path / f"{name}.jsonl")
    return [CLI, "pilot", spec, "--store", store, "--trace-file", trace, "--concurrency", "2", "--json"]


def run(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def open_pairs(db: Path, tasks: tuple[str, ...]) -> int:
    """Open pairs of ``tasks`` committed to the pilot's store so far (read while the pilot writes: WAL)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=WAIT_S)) as reader:
        marks = ",".join("?" * len(tasks))
        query = f"SELECT count(*) FROM pairs WHERE status = 'open' AND task_id IN ({marks})"
        return int(reader.execute(query, tasks).fetchone()[0])


def wait_until_held(proc: subprocess.Popen[str], markers: list[Path], db: Path, tasks: tuple[str, ...]) -> None:
    """Until both tasks wait at their judge *and* their pairs are in the store: the verdicts that fork them are
    judged off the user's path, so a pair may land a little after its run reached the judge."""
    deadline = time.monotonic() + WAIT_S
    while not all(m.exists() for m in markers) or open_pairs(db, tasks) < len(tasks):
        if proc.poll() is not None:
            raise AssertionError(f"the pilot ended before it was held: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the pilot was not held at {markers} with its pairs stored within {WAIT_S}s")
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_mid_pilot_and_rerun_loses_no_pair_and_counts_none_twice(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    env = {**os.environ, "CG_PILOT_GATE": str(gate)}
    suite = mixed_suite()  # the same suite, uninterrupted, in this process
    with suite.guard(mode="pilot", store=f"sqlite:///{tmp_path / 'reference.db'}") as guard:
        reference = asyncio.run(run_pilot(suite, guard, concurrency=2)).to_dict()

    cmd = command("pilot_suites:gated_suite", tmp_path, "crashed")
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held_tasks = ("t04", "t05")
    markers = [tmp_path / f"gate.waiting-{task}" for task in held_tasks]
    wait_until_held(proc, markers, tmp_path / "crashed.db", held_tasks)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL

    with SQLiteStore(tmp_path / "crashed.db") as store:
        rows = {r.task_id: r.status for r in store.pilot_tasks(reference["pilot_key"])}
        assert rows == {
            **{f"t0{i}": PilotTaskStatus.DONE for i in range(4)},
            "t04": PilotTaskStatus.RUNNING,
            "t05": PilotTaskStatus.RUNNING,
        }
        held = [p for p in store.pairs(reference["guard_key"]) if p.task_id in ("t04", "t05")]
        assert [p.status for p in held] == [PairStatus.OPEN, PairStatus.OPEN]

    gate.touch()
    resumed = run(cmd, env)
    assert resumed["pairs"] == reference["pairs"]  # nothing lost, nothing counted twice
    assert (resumed["done"], resumed["ran"], resumed["skipped"], resumed["abandoned"]) == (8, 4, 4, 2)
    assert resumed["report"]["n"] == reference["report"]["n"] == 8
    with SQLiteStore(tmp_path / "crashed.db") as store:
        record = store.get_guard(reference["guard_key"])
        assert record is not None
        assert (record.counts.n00, record.counts.n01, record.counts.n10, record.counts.n11) == tuple(
            reference["pairs"][cell] for cell in ("n00", "n01", "n10", "n11")
        )
        assert record.incomplete == 2
        abandoned = [p for p in store.pairs(reference["guard_key"]) if p.status is PairStatus.INCOMPLETE]
        assert sorted((p.task_id, p.reason) for p in abandoned) == [
            ("t04", ABANDONED_REASON),
            ("t05", ABANDONED_REASON),
        ]
