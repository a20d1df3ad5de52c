"""Benchmark: the pilot report of a store with a million pairs, read set-based, beside the old per-pair path.

    .venv/bin/python benchmarks/report_scale.py [--pairs 1000000] [--old-pairs 20000] [--seed 0]

Builds SQLite stores through the store's own schema (``SQLiteStore`` migrates the file; rows are bulk-inserted with
``executemany`` in one transaction): per pair a production run (two judged steps, the second flagged for a flagged
pair) and its shadow run, both outcomes, the complete A/B pair, and the monitor the lifecycle stores after it
(``pair_monitor``, critic_guard/store/pair_track.py), then the guard row as the lifecycle leaves it (mode ``pilot``:
the monitor learns, the state stays). Each measurement runs in a fresh process and prints CPU and wall time of
gathering the report's data and of building the page (numbers, figures, HTML), and the process's peak RSS
(``resource.getrusage``, which includes the interpreter, numpy and matplotlib themselves).

"old" is the path before the snapshots (main at eabee2d, kept here to measure it): ``store.pairs`` then one
``steps_of`` per pair and two queries per run for the critic's labeled verdicts, and a monitor replayed over pairs
sorted by completion time. Only measured figures are printed, each at its own N; nothing is extrapolated.

The shortcut, and why it writes the same rows: running ``MonitorState.update`` a million times costs about 200 µs
each (minutes). The monitor's scalar e-processes are folded pair by pair with the monitor's own ``_advance``; the
band's grid of e-processes depends on the pairs only through those bets, so it is a running sum over pairs, taken
with ``np.cumsum`` in the same order of additions (and the running max/min of the bounds likewise), which gives the
same floats. ``tests/test_benchmark_report_scale.py`` checks the rows against the lifecycle's own at small N.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from critic_guard.calibration import labeled_verdicts
from critic_guard.lifecycle import GuardRecord, GuardState, new_counts
from critic_guard.report.data import PairPoint, ReportData, StoreExtras, from_store
from critic_guard.stats.monitor import GRID, MonitorState, _advance, _grid_bounds, _Sums
from critic_guard.store import PairKind, PairStatus, SQLiteStore, Store
from critic_guard.store.ledger import GUARD_COLUMNS, PAIR_COLUMNS, _guard_values
from critic_guard.store.pair_track import SNAPSHOT_COLUMNS
from critic_guard.store.run_log import RUN_COLUMNS, STEP_COLUMNS

KEY = "bench/critic/00000000"
ALPHA = 0.05
_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class MonitorRows:
    """The monitor after each pair (the ``pair_monitor`` columns) and the state after the last one."""

    band_low: np.ndarray[Any, Any]
    band_high: np.ndarray[Any, Any]
    harm_log_wealth: list[float]
    benefit_log_wealth: list[float]
    harm_proven_at: int | None
    benefit_proven_at: int | None
    final: MonitorState


def monitor_rows(x: np.ndarray[Any, Any], alpha: float = ALPHA, split: bool = True) -> MonitorRows:
    """What ``MonitorState.update`` gives after each of ``x`` (see the module's docstring for why it is the same)."""
    start = MonitorState.start(alpha, split=split)
    sums = start._sums()
    level = math.log(start.threshold)
    n = len(x)
    harm_bets, benefit_bets = np.empty(n), np.empty(n)
    harm_lw, benefit_lw = [0.0] * n, [0.0] * n
    harm_at = benefit_at = None
    for j, value in enumerate(x.tolist()):
        harm_bets[j], benefit_bets[j] = sums.harm_bet, sums.benefit_bet  # the bets held before pair j
        if value != 0.5:  # a concordant pair bets on a gain of 0: the scalar e-processes stay exactly as they were
            sums = _Sums(*(float(v) for v in _advance(sums, value)))
        harm_lw[j], benefit_lw[j] = sums.harm_log_wealth, sums.benefit_log_wealth
        if harm_at is None and sums.harm_log_wealth >= level:
            harm_at = j + 1
        if benefit_at is None and sums.benefit_log_wealth >= level:
            benefit_at = j + 1
    low, high = np.empty(n), np.empty(n)
    harm_grid, benefit_grid = np.zeros((1, GRID.size)), np.zeros((1, GRID.size))
    running_low, running_high = -1.0, 1.0
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        xs = x[lo:hi, None]
        harm_steps = np.log(1.0 + harm_bets[lo:hi, None] * (xs - GRID))
        benefit_steps = np.log(1.0 + benefit_bets[lo:hi, None] * (GRID - xs))
        harm = np.cumsum(np.vstack([harm_grid, harm_steps]), axis=0)[1:]  # carry first: the sequential order
        benefit = np.cumsum(np.vstack([benefit_grid, benefit_steps]), axis=0)[1:]
        now_low, now_high = _grid_bounds(harm, benefit, level)
        low[lo:hi] = np.maximum.accumulate(np.r_[running_low, now_low])[1:]
        high[lo:hi] = np.minimum.accumulate(np.r_[running_high, now_high])[1:]
        harm_grid, benefit_grid = harm[-1:], benefit[-1:]
        running_low, running_high = float(low[hi - 1]), float(high[hi - 1])
    final = MonitorState(
        alpha=alpha, split=split, t=n, **sums._asdict(), harm_proven_at=harm_at, benefit_proven_at=benefit_at,
        harm_grid=tuple(harm_grid[0].tolist()), benefit_grid=tuple(benefit_grid[0].tolist()),
        band_low=running_low, band_high=running_high,
    )  # fmt: skip
    return MonitorRows(low, high, harm_lw, benefit_lw, harm_at, benefit_at, final)


def build_store(path: Path, pairs: int, *, seed: int = 0) -> None:
    """A store with ``pairs`` complete A/B pairs of one guard key (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    control = rng.random(pairs) < 0.55
    treatment = np.where(control, rng.random(pairs) < 0.93, rng.random(pairs) < 0.12)
    flagged = rng.random(pairs) < 0.4
    fork_step = rng.integers(1, 6, pairs)
    scores = rng.random((pairs, 2)) * 0.5 + np.where(flagged, 0.5, 0.0)[:, None] * np.array([0.0, 1.0])
    x = (control.astype(int) - treatment.astype(int) + 1) / 2.0
    track = monitor_rows(x)
    SQLiteStore(path).close()  # the schema, as the store creates and migrates it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    at = 1.7e9
    runs, steps, outcomes, pair_rows, snapshots = [], [], [], [], []
    for i, (c, t, f, s, (s0, s1)) in enumerate(
        zip(control.tolist(), treatment.tolist(), flagged.tolist(), fork_step.tolist(), scores.tolist(), strict=True)
    ):
        prod, shadow, when = f"p{i:07d}", f"p{i:07d}~t", at + i
        runs += [
            (prod, KEY, "bench", "control", f"task{i}", None, None, None, "ended", when, when + 1),
            (shadow, KEY, "bench", "treatment", f"task{i}", None, prod, s if f else None, "ended", when, when + 1),
        ]
        steps += [
            (prod, 0, 0, s0, None, None, False, "none", "below_tau", None, 0.01, when),
            (prod, s, 0, s1, None, None, f, "none", "flagged" if f else "below_tau", None, 0.01, when),
        ]
        outcomes += [(prod, c, when + 1), (shadow, t, when + 1)]
        pair_rows.append((prod, KEY, "ab", "fork", f"task{i}", prod, shadow, f, s if f else None, None, "complete",
                          None, c, t, when, when + 1))  # fmt: skip
        snapshots.append((prod, KEY, i + 1, i + 1, track.band_low[i], track.band_high[i], track.harm_log_wealth[i],
                          track.benefit_log_wealth[i], _proven(track.harm_proven_at, i + 1),
                          _proven(track.benefit_proven_at, i + 1), None, "pilot"))  # fmt: skip
    _insert(conn, "runs", RUN_COLUMNS, runs)
    _insert(conn, "steps", STEP_COLUMNS, steps)
    _insert(conn, "outcomes", "run_id, success, recorded_at", outcomes)
    _insert(conn, "pairs", PAIR_COLUMNS, pair_rows)
    _insert(conn, "pair_monitor", SNAPSHOT_COLUMNS, snapshots)
    cells = [int(np.sum((control == bool(a)) & (treatment == bool(b)))) for a in (0, 1) for b in (0, 1)]
    record = GuardRecord(KEY, GuardState.PILOT, track.final, new_counts(*cells), version=pairs, updated_at=at + pairs)
    _insert(conn, "guards", GUARD_COLUMNS, [_guard_values(record)])
    conn.execute("COMMIT")
    conn.close()


def _proven(at: int | None, t: int) -> int | None:
    """A proof as the monitor holds it after ``t`` pairs: set from the pair that made it on."""
    return at if at is not None and at <= t else None


def _insert(conn: sqlite3.Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" * len(columns.split(", ")))
    conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def old_from_store(store: Store, guard_key: str, *, source: str) -> ReportData:
    """The report's data as gathered before the snapshots: one query per pair and per run, no stored track."""
    pairs = store.pairs(guard_key)
    complete = sorted(
        (p for p in pairs if p.status is PairStatus.COMPLETE),
        key=lambda p: (p.completed_at or 0.0, p.created_at, p.pair_id),
    )
    points = []
    for pair in (p for p in complete if p.kind is PairKind.AB):
        assert pair.control_success is not None and pair.treatment_success is not None
        fork_step, p_fail = (pair.fork_step if pair.flagged else None), None
        if pair.flagged:
            production = pair.pair_id if pair.pair_id in (pair.control_run_id, pair.treatment_run_id) else None
            flag = next((s for s in store.steps_of(production or pair.control_run_id) if s.flagged), None)
            if flag is not None:
                fork_step, p_fail = (flag.step if fork_step is None else fork_step), flag.p_fail
        points.append(PairPoint(pair.control_success, pair.treatment_success, pair.flagged, fork_step, p_fail))
    aa = [p for p in complete if p.kind is PairKind.AA]
    record = store.get_guard(guard_key)
    scores, failed = labeled_verdicts(store, guard_key)
    extras = StoreExtras(
        state=None if record is None else record.state,
        monitor_alpha=None if record is None else record.monitor.alpha,
        transitions=tuple(store.transitions(guard_key)),
        aa_pairs=len(aa),
        aa_discordant=sum(p.control_success != p.treatment_success for p in aa),
        incomplete_reasons=tuple(p.reason or "no reason recorded" for p in pairs if p.status is PairStatus.INCOMPLETE),
        scores=tuple(float(s) for s in scores),
        failed=tuple(bool(f) for f in failed),
        open_pairs=sum(p.status is PairStatus.OPEN for p in pairs),
        monitor_split=True if record is None else record.monitor.split,
        inconclusive_at=None if record is None else record.monitor.inconclusive_at,
    )
    return ReportData(source=source, guard_key=guard_key, pairs=tuple(points), store=extras)


def measure(store_path: Path, path: str) -> dict[str, Any]:
    """Gather the data (``path`` "new" or "old") and build the page; CPU and wall seconds of each, peak RSS.

    The modules are imported before the clocks start (scipy and matplotlib take a second or two whatever N is)."""
    import critic_guard.stats.monitor  # noqa: F401  (scipy.stats, which reading the guard's monitor loads)
    from critic_guard.report.build import build_report

    gather = from_store if path == "new" else old_from_store
    with SQLiteStore(store_path) as store:
        cpu, wall = time.process_time(), time.perf_counter()
        data = gather(store, KEY, source="bench")
        data_cpu, data_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    built = build_report(data)
    html_cpu, html_wall = time.process_time() - cpu, time.perf_counter() - wall
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {
        "path": path,
        "pairs": len(data.pairs),
        "data_cpu_s": data_cpu,
        "data_wall_s": data_wall,
        "html_cpu_s": html_cpu,
        "html_wall_s": html_wall,
        "peak_rss_mb": peak_kb / 1024.0,
        "html_bytes": len(built.html),
        "harm_proven_at": built.numbers.monitor.harm_proven_at,  # type: ignore[union-attr]
        "benefit_proven_at": built.numbers.monitor.benefit_proven_at,  # type: ignore[union-attr]
    }


def _child(*args: str) -> str:
    """Run this script in a fresh interpreter: a peak RSS is the process's own only if its parent stayed small
    (Linux counts the parent's resident set at ``fork`` into the child's ``ru_maxrss``), so the parent neither
    builds nor measures."""
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs in the store the new path reads")
    parser.add_argument("--old-pairs", type=int, default=20_000, help="pairs in the store both paths read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["new", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build is not None:
        started = time.perf_counter()
        build_store(args.store, args.build, seed=args.seed)
        print(json.dumps({"seconds": time.perf_counter() - started}))
        return []
    if args.measure is not None:
        print(json.dumps(measure(args.store, args.measure)))
        return []
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted({args.old_pairs, args.pairs}):
            path = Path(tmp) / f"pairs_{n}.db"
            built = json.loads(_child("--build", str(n), "--store", str(path), "--seed", str(args.seed)))
            print(f"built a store of {n:,} pairs in {built['seconds']:.1f} s "
                  f"({path.stat().st_size / 2**20:.0f} MB)", flush=True)  # fmt: skip
            for which in ("new", "old") if n == args.old_pairs else ("new",):
                results.append(json.loads(_child("--measure", which, "--store", str(path))))
    print(f"{'path':<5} {'pairs':>10} {'data cpu':>9} {'data wall':>10} {'html cpu':>9} {'html wall':>10} "
          f"{'peak RSS':>9}")  # fmt: skip
    for r in results:
        print(f"{r['path']:<5} {r['pairs']:>10,} {r['data_cpu_s']:>8.2f}s {r['data_wall_s']:>9.2f}s "
              f"{r['html_cpu_s']:>8.2f}s {r['html_wall_s']:>9.2f}s {r['peak_rss_mb']:>6.0f} MB")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
