"""Micro-benchmark: what the store and the whole guard cost per agent step.

    .venv/bin/python benchmarks/store_writes.py [--n 5000]

Prints µs per ``add_step`` for the SQLite store (a file in WAL + synchronous=NORMAL, and ``:memory:``): what the
agent's step pays (the step is queued; critic_guard/store/step_writer.py commits batches from a background thread),
and, for comparison, one step committed in its own transaction (what each step paid before batching). Then the
per-step cost of ``CriticGuard.review`` with a trivial critic (``ConstantCritic``): with and without the store, and
with the worker-pool hop (timeout on, the default) or inline (timeout disabled). The issue's budget is a median
under 500 µs per step for the whole guard with SQLite on.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from critic_guard.critics import ConstantCritic
from critic_guard.guard import CriticGuard
from critic_guard.store import RunRecord, SQLiteStore, StepRecord
from critic_guard.types import Action, Arm, StepContext


def _summary(label: str, seconds: list[float]) -> None:
    us = sorted(s * 1e6 for s in seconds)
    p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
    print(f"{label:<52} median {statistics.median(us):7.1f} µs   mean {statistics.fmean(us):7.1f}   p99 {p99:8.1f}")


def _timed(fn: Callable[[int], object], n: int, warmup: int = 200) -> list[float]:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return times


def bench_store(path: str, n: int, *, one_transaction_each: bool = False) -> list[float]:
    with SQLiteStore(path) as store:
        store.add_run(RunRecord("run", "agent/critic/00000000", "agent", Arm.CONTROL, time.time()))

        def step(i: int) -> StepRecord:
            return StepRecord("run", i, 0, 0.42, None, None, False, Action.NONE, "below_tau", None, 1e-5, time.time())

        if one_transaction_each:
            return _timed(lambda i: store._insert_steps([step(i)]), n)
        return _timed(lambda i: store.add_step(step(i)), n)


def bench_guard(n: int, *, store: str | None, timeout_s: float | None) -> list[float]:
    with CriticGuard(ConstantCritic(0.7), mode="on", store=store, critic_timeout_s=timeout_s) as guard:
        run_id = guard.start_run()
        messages = ({"role": "user", "content": "task"}, {"role": "assistant", "content": "step"})
        return _timed(lambda i: guard.review(StepContext(run_id, i, messages), interventions=1), n)


def bench_guard_async(n: int, *, store: str | None) -> list[float]:
    async def main() -> list[float]:
        with CriticGuard(ConstantCritic(0.7), mode="on", store=store) as guard:
            run_id = guard.start_run()
            times = []
            for i in range(n + 200):
                started = time.perf_counter()
                await guard.areview(StepContext(run_id, i, ()), interventions=1)
                times.append(time.perf_counter() - started)
            return times[200:]

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="measured iterations per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        url = f"sqlite:///{Path(tmp) / 'guard.db'}"
        print("store writes")
        _summary("  add_step, SQLite file (queued, batch-committed)", bench_store(str(db), args.n))
        _summary("  add_step, SQLite :memory: (queued)", bench_store(":memory:", args.n))
        _summary(
            "  one step per transaction, SQLite file", bench_store(str(db) + "2", args.n, one_transaction_each=True)
        )
        print("whole guard per step (ConstantCritic, mode=on)")
        _summary("  review: pool hop (timeout 5 s) + SQLite file", bench_guard(args.n, store=url, timeout_s=5.0))
        _summary("  review: inline (timeout None) + SQLite file", bench_guard(args.n, store=url, timeout_s=None))
        _summary("  review: pool hop, no store", bench_guard(args.n, store=None, timeout_s=5.0))
        _summary("  review: inline, no store", bench_guard(args.n, store=None, timeout_s=None))
        _summary("  areview: native async critic + SQLite file", bench_guard_async(args.n, store=url))


if __name__ == "__main__":
    main()
