"""What ``import critic_guard_langgraph`` costs beyond ``import langchain.agents`` (issue 14: at most 0.3 s).

    .venv/bin/python benchmarks/import_time.py [--repeats 15]

Each import runs in a fresh interpreter (``sys.executable``), timed inside it around the ``import`` statement alone,
so interpreter start-up is not counted. The two are alternated, one pair per repeat, after one untimed warm-up run
each (bytecode caches, the OS file cache). Printed: each import's median with a distribution-free 95% interval (order
statistics of the median), and the paired difference (our package minus ``langchain.agents``; our package imports
``langchain.agents`` itself) with its interval: the budget is met when the difference's upper end is at most 0.3 s.
The figure and its command are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
from importlib import metadata

BUDGET_S = 0.3
BASELINE = "langchain.agents"
OURS = "critic_guard_langgraph"


def time_import(module: str) -> float:
    """Seconds the ``import`` of ``module`` takes in a fresh interpreter."""
    script = f"import time\nstarted = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - started)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    return float(done.stdout.split()[-1])


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """The median and a distribution-free interval for it: order statistics k and n-k+1 of the sorted values.

    k is the largest rank with P(Binomial(n, 1/2) < k) <= (1 - level) / 2, so the interval covers the true median
    with probability at least ``level`` whatever the distribution (n >= 6 for 95%).
    """
    ordered, n = sorted(values), len(values)
    tail = (1.0 - level) / 2.0
    k, below = 0, 0.0
    while k < n // 2 and below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        raise ValueError(f"{n} repeats are too few for a {level:.0%} interval of the median")
    return statistics.median(ordered), ordered[k - 1], ordered[n - k]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="pairs of fresh interpreters (at least 6)")
    args = parser.parse_args(argv)
    if args.repeats < 6:
        parser.error("--repeats must be at least 6 for a 95% interval of the median")

    versions = ", ".join(f"{n} {_version(n)}" for n in ("langchain", "langchain-core", "langgraph", "critic-guard"))
    print(f"Python {platform.python_version()}, {versions}; {args.repeats} repeats, alternating, fresh interpreters")
    time_import(BASELINE), time_import(OURS)  # warm-up: bytecode and file caches
    baseline, ours = [], []
    for repeat in range(args.repeats):
        order = (BASELINE, OURS) if repeat % 2 == 0 else (OURS, BASELINE)
        timed = {module: time_import(module) for module in order}
        baseline.append(timed[BASELINE])
        ours.append(timed[OURS])
    difference = [o - b for o, b in zip(ours, baseline, strict=True)]

    rows = ((f"import {BASELINE}", baseline), (f"import {OURS}", ours), ("difference (ours - langchain)", difference))
    for label, values in rows:
        median, low, high = median_interval(values)
        print(f"{label:<34} median {median:6.3f} s   95% interval [{low:6.3f}, {high:6.3f}]")
    _, _, high = median_interval(difference)
    verdict = "within" if high <= BUDGET_S else "OVER"
    print(f"budget: at most {BUDGET_S} s more than {BASELINE}: {verdict} (upper end {high:.3f} s)")


if __name__ == "__main__":
    main()
