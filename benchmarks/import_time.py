"""What ``import critic_guard_langgraph`` costs beyond ``import langchain.agents`` (issue 14: at most 0.3 s).

    .venv/bin/python benchmarks/import_time.py [--repeats 15]

Each repeat is a fresh interpreter (``sys.executable``) that times ``import langchain.agents`` and then
``import critic_guard_langgraph``, each around the ``import`` statement alone (interpreter start-up is not counted),
in wall-clock and CPU seconds. The second import is exactly what our package adds to the first (it imports
``langchain.agents`` itself), measured in the same process, so the variance of LangChain's own import does not blur
it; the two together are what importing our package alone costs. One untimed warm-up run comes first (bytecode
caches, the OS file cache). Printed: medians with a distribution-free 95% interval (order statistics of the median);
the budget is met when the upper end of the difference's interval is at most 0.3 s, checked for both clocks. On an
idle machine an import's wall time is about its CPU time (one thread, files cached); on a loaded one the wall time
stretches with the wait for a core, the CPU time much less, so the load average is printed too. The figure and
its command are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata

BUDGET_S = 0.3
BASELINE = "langchain.agents"
OURS = "critic_guard_langgraph"
SCRIPT = f"""\
import json, time
def timed(name):
    wall, cpu = time.perf_counter(), time.process_time()
    __import__(name)
    return [time.perf_counter() - wall, time.process_time() - cpu]
print(json.dumps([timed({BASELINE!r}), timed({OURS!r})]))
"""


def time_imports() -> tuple[list[float], list[float]]:
    """[wall, cpu] seconds of ``import langchain.agents``, then of ``import critic_guard_langgraph`` (one process)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    baseline, ours = json.loads(done.stdout.splitlines()[-1])
    return baseline, ours


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
    parser.add_argument("--repeats", type=int, default=15, help="fresh interpreters (at least 6)")
    args = parser.parse_args(argv)
    if args.repeats < 6:
        parser.error("--repeats must be at least 6 for a 95% interval of the median")

    versions = ", ".join(f"{n} {_version(n)}" for n in ("langchain", "langchain-core", "langgraph", "critic-guard"))
    print(f"Python {platform.python_version()}, {versions}; {args.repeats} fresh interpreters")
    time_imports()  # warm-up: bytecode and file caches
    runs = [time_imports() for _ in range(args.repeats)]

    print(f"{'':<58} {'wall s: median [95% interval]':<32} cpu s: median [95% interval]")
    rows = (
        (f"import {BASELINE}", [b for b, _ in runs]),
        (f"import {OURS} (alone)", [[bw + ow, bc + oc] for (bw, bc), (ow, oc) in runs]),
        (f"difference: {OURS} after {BASELINE}", [o for _, o in runs]),
    )
    for label, values in rows:
        cells = []
        for column in (0, 1):
            median, low, high = median_interval([v[column] for v in values])
            cells.append(f"{median:6.3f} [{low:6.3f}, {high:6.3f}]")
        print(f"{label:<58} {cells[0]:<32} {cells[1]}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min) at the end")
    for column, clock in ((0, "wall"), (1, "cpu")):
        _, _, high = median_interval([o[column] for _, o in runs])
        verdict = "within" if high <= BUDGET_S else "OVER"
        print(f"budget: at most {BUDGET_S} s more than {BASELINE}, {clock}: {verdict} (upper end {high:.3f} s)")


if __name__ == "__main__":
    main()
