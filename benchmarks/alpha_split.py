"""What one alpha for both sides costs: pairs to a proof with alpha/2 per e-process (the default) vs alpha each.

    .venv/bin/python -m benchmarks.alpha_split [--runs 2000] [--horizon 6000] [--alpha 0.05] [--seed 0]

For each world (net effect, share of discordant pairs) the monitor of ``critic_guard.stats.run_monitor`` runs on
``--runs`` seeded streams of ``--horizon`` pairs, once with ``split=True`` (``alpha`` bounds a wrong harm *or*
benefit proof: the lifecycle's default) and once with ``split=False`` (``alpha`` per e-process:
``GuardConfig(alpha_per_side=True)``). Printed per world: the share of streams proven within the horizon, the mean
and median pairs to the proof (over all streams; a stream without proof counts as the horizon, so both are lower
bounds when the share is below 100%), and the ratio default / per-side. The null world reports the share of streams
with any wrong proof instead. Pairs are SIMULATED (independent, ``X`` = recovery / disruption / concordant).
Results in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from critic_guard.stats import run_monitor

WORLDS: tuple[tuple[float, float], ...] = ((0.0, 0.3), (0.05, 0.1), (0.05, 0.3), (0.1, 0.3), (0.2, 0.3), (-0.1, 0.3))
"""(net, discordant) pairs: the null world, then benefits and one harm (the two sides are mirror images)."""


def simulate(rng: np.random.Generator, runs: int, horizon: int, net: float, discordant: float) -> NDArray[np.float64]:
    """Streams of X: 0 (recovery) w.p. (discordant + net)/2, 1 (disruption) w.p. (discordant - net)/2, else 1/2."""
    u = rng.random((runs, horizon))
    recovery, disruption = (discordant + net) / 2, (discordant - net) / 2
    return np.where(u < recovery, 0.0, np.where(u < recovery + disruption, 1.0, 0.5))


def proof_times(x: NDArray[np.float64], alpha: float, split: bool, net: float) -> NDArray[np.int64]:
    """Pairs to the first proof of the true side (harm for net < 0, benefit otherwise); 0 = none in the horizon."""
    paths = run_monitor(x, alpha, split=split, band=False)
    if net == 0:
        harm, benefit = paths.harm_times(), paths.benefit_times()
        return np.where((harm > 0) & ((benefit == 0) | (harm <= benefit)), harm, benefit)
    return paths.harm_times() if net < 0 else paths.benefit_times()


def summary(times: NDArray[np.int64], horizon: int) -> tuple[float, float, float]:
    """Share proven, mean and median pairs (a stream never proven counts as ``horizon``)."""
    censored = np.where(times > 0, times, horizon)
    return float(np.mean(times > 0)), float(np.mean(censored)), float(np.median(censored))


def run(runs: int, horizon: int, alpha: float, seed: int) -> list[str]:
    lines = [
        "| net | discordant | default (alpha/2 per side): proven, mean / median pairs | per side (alpha each) | "
        "mean ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for index, (net, discordant) in enumerate(WORLDS):
        x = simulate(np.random.default_rng(seed + index), runs, horizon, net, discordant)
        split = summary(proof_times(x, alpha, True, net), horizon)
        per_side = summary(proof_times(x, alpha, False, net), horizon)
        if net == 0:
            lines.append(
                f"| 0 (null) | {discordant:g} | any wrong proof: {split[0]:.1%} | any wrong proof: {per_side[0]:.1%} "
                "| n/a |"
            )
            continue
        lines.append(
            f"| {net:+g} | {discordant:g} | {split[0]:.1%}, {split[1]:.0f} / {split[2]:.0f} | "
            f"{per_side[0]:.1%}, {per_side[1]:.0f} / {per_side[2]:.0f} | {split[1] / per_side[1]:.2f}x |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--horizon", type=int, default=6000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    lines = run(args.runs, args.horizon, args.alpha, args.seed)
    print(f"alpha {args.alpha}, {args.runs} seeded streams of {args.horizon} pairs per world (SIMULATED)")
    print("\n".join(lines))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
