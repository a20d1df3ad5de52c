"""Guarded pilots on real environments: TextWorld and BFCL v4 multi-turn, ``fork`` design against ``full`` runs.

    .venv/bin/python -m benchmarks.real_envs [--smoke] [--json FILE] [--games 30] [--bfcl-tasks 200]
        [--regime help|harm ...] [--mistake-rate M --auroc A --center C] [--slack 3] [--seed 0]

Each environment's tasks run through the same guarded ``create_agent`` graph (``benchmarks/envs/agent.py``): the
scripted agent plays the environment's oracle with injected mistakes, the critic scores every proposed step with
noise of a given AUROC, the policy is the paper's (tau 0.6, rollback with feedback, ``min_step`` 2, 3
interventions), and the judge is the environment's own (TextWorld ``won``; BFCL's official ``multi_turn_checker``).
Tasks: TextWorld ``tw-cooking`` games of seeds 1..``--games`` generated offline with ``make_game`` (cached in
``.cache/textworld``); the first ``--bfcl-tasks`` tasks of ``multi_turn_base`` shipped in ``bfcl-eval``. A task's
step budget is its oracle plan (TextWorld) or ground-truth calls (BFCL) plus ``--slack`` tool calls.

Regimes (:data:`REGIMES`, both by default): ``help``, an agent that errs on 10 % of steps and a sharp critic (AUROC
0.9) that rarely flags right steps; ``harm``, an agent that errs on 5 % of steps and a noisy, talkative critic
(AUROC 0.75, flags many right steps), as with the paper's HotPotQA. ``--mistake-rate``, ``--auroc``, ``--center``
run one ``custom`` regime instead (unset knobs as in ``help``).

Both designs run each task with the same seed, so the ``full`` design's control run *is* the ``fork`` design's
production run; ``full`` adds an independent treatment run (another draw), ``fork`` a treatment branch from the first
flag. Reported per environment and design: tasks, flagged tasks, incomplete pairs, cells, ``p`` and ``p_star`` with
95 % credible intervals (Dirichlet posterior), ``net`` with the 95 % Tango score interval, the verdict, and the
agent's model calls per task as counted in the model (branches included).

Everything is seeded: the same command prints the same numbers (wall times aside).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from benchmarks.envs.bfcl_env import BfclEnv, load_tasks
from benchmarks.envs.pilot import DESIGNS, Design, PilotResult, Task, run_pilot
from benchmarks.envs.scripted import OracleAgent, OracleCritic
from benchmarks.envs.textworld_env import TextWorldEnv, make_game
from critic_guard.stats import analyze, mcnemar_sample_size
from critic_guard.stats.counts import Estimate

CACHE: Final = Path(__file__).resolve().parents[1] / ".cache" / "textworld"
FULL_SIZE: Final = {"games": 30, "bfcl_tasks": 200}
SMOKE_SIZE: Final = {"games": 2, "bfcl_tasks": 4}


@dataclass(frozen=True, slots=True)
class Regime:
    """The agent's and the critic's knobs for one run of the benchmark."""

    name: str
    mistake_rate: float
    auroc: float
    center: float

    def agent(self) -> OracleAgent:
        return OracleAgent(mistake_rate=self.mistake_rate)

    def critic(self) -> OracleCritic:
        return OracleCritic(auroc=self.auroc, center=self.center)


REGIMES: Final = {
    "help": Regime("help", mistake_rate=0.1, auroc=0.9, center=1.5),
    "harm": Regime("harm", mistake_rate=0.05, auroc=0.75, center=0.8),
}


@dataclass(frozen=True, slots=True)
class EnvResult:
    """Both designs' pilots on one environment in one regime."""

    regime: Regime
    env: str
    results: Mapping[Design, PilotResult]

    def to_dict(self) -> dict[str, Any]:
        designs: dict[str, Any] = {design: _summary(result) for design, result in self.results.items()}
        return {"regime": self.regime.name, "knobs": _knobs(self.regime), "env": self.env, **designs}


def _knobs(regime: Regime) -> dict[str, float]:
    return {"mistake_rate": regime.mistake_rate, "auroc": regime.auroc, "center": regime.center}


def textworld_tasks(games: int, slack: int, seed: int) -> list[Task]:
    """``tw-cooking`` games of seeds 1..games (generated once, then cached); budget: the oracle plan + slack."""
    tasks = []
    for game_seed in range(1, games + 1):
        game = make_game("tw-cooking", game_seed, CACHE)
        probe = TextWorldEnv(game)
        plan = len(probe.policy_commands)
        probe.close()
        tasks.append(Task(game.stem, _opener(TextWorldEnv, game), seed * 100_000 + game_seed, plan + slack))
    return tasks


def bfcl_tasks(count: int, slack: int, seed: int) -> list[Task]:
    """The first ``count`` tasks of ``multi_turn_base``; budget: the ground-truth calls + slack."""
    return [
        Task(task.id, _opener(BfclEnv, task), seed * 100_000 + index, sum(map(len, task.ground_truth)) + slack)
        for index, task in enumerate(load_tasks("multi_turn_base", limit=count))
    ]


def _opener(env_class: Any, source: Any) -> Any:
    return lambda: env_class(source)


def run_benchmark(
    games: int, bfcl_count: int, regimes: Sequence[Regime], *, slack: int, seed: int, workdir: Path
) -> list[EnvResult]:
    """Every regime, both environments, both designs; SQLite stores and checkpoints under ``workdir``."""
    suites = {"textworld": textworld_tasks(games, slack, seed), "bfcl": bfcl_tasks(bfcl_count, slack, seed)}
    results = []
    for regime in regimes:
        for name, tasks in suites.items():
            where = workdir / regime.name / name
            pilots = {
                design: run_pilot(tasks, design, where, agent=regime.agent(), critic=regime.critic())
                for design in DESIGNS
            }
            results.append(EnvResult(regime, name, pilots))
    return results


def _summary(result: PilotResult) -> dict[str, Any]:
    report = analyze(result.counts)
    credible = report.posterior.intervals()
    return {
        "tasks": len(result.model_calls),
        "flagged": result.flagged,
        "incomplete": result.incomplete,
        **report.to_dict(),
        "p_credible": [credible["p"].low, credible["p"].high],
        "p_star_credible": [credible["p_star"].low, credible["p_star"].high],
        "model_calls_per_task": result.calls_per_task,
        "env_steps_per_task": sum(result.env_steps) / len(result.env_steps),
        "seconds": result.seconds,
    }


def _num(estimate: Estimate | float | None) -> str:
    value = estimate.value if isinstance(estimate, Estimate) else estimate
    return "  -  " if value is None else f"{value:.3f}"


def format_table(results: Sequence[EnvResult]) -> str:
    """One row per environment and design, then the calls ratio per environment."""
    header = (
        "| regime | env | design | tasks | flagged | incomplete | n00 n01 n10 n11 | p [95% CrI] | p_star [95% CrI] "
        "| net [95% Tango] | verdict | calls/task | seconds |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    ratios = []
    for env in results:
        for design, result in env.results.items():
            s = _summary(result)
            flagged = s["flagged"] if design == "fork" else "-"  # the full design does not track its runs' flags
            lines.append(
                f"| {env.regime.name} | {env.env} | {design} | {s['tasks']} | {flagged} | {s['incomplete']} "
                f"| {s['n00']} {s['n01']} {s['n10']} {s['n11']} "
                f"| {_num(s['p'])} [{_num(s['p_credible'][0])}, {_num(s['p_credible'][1])}] "
                f"| {_num(s['p_star'])} [{_num(s['p_star_credible'][0])}, {_num(s['p_star_credible'][1])}] "
                f"| {_num(s['net'])} [{_num(s['net_ci_low'])}, {_num(s['net_ci_high'])}] | {s['verdict']} "
                f"| {s['model_calls_per_task']:.1f} | {s['seconds']:.0f} |"
            )
        fork, full = env.results["fork"], env.results["full"]
        ratios.append(
            f"{env.regime.name}, {env.env}: agent model calls per task fork {fork.calls_per_task:.1f} "
            f"vs full {full.calls_per_task:.1f} (full / fork = {full.calls_per_task / fork.calls_per_task:.2f}); "
            + planned_calls(fork, full)
        )
    return "\n".join([*lines, "", *ratios])


def planned_calls(fork: PilotResult, full: PilotResult) -> str:
    """Agent calls for the same decision: Connor's tasks for 80 % power at the fork's |net| with each design's
    discordant rate (rerun noise raises full's), times each design's calls per task."""
    effect = abs(fork.counts.net.value or 0.0)
    rates = [result.counts.discordant / result.counts.n for result in (fork, full)]
    if effect == 0.0 or any(effect >= rate for rate in rates):
        return "planned calls for a decision: undefined (|net| is 0 or not below a discordant rate)"
    calls = [
        mcnemar_sample_size(effect, rate) * result.calls_per_task
        for rate, result in zip(rates, (fork, full), strict=True)
    ]
    return (
        f"planned calls for an 80 %-power decision at |net| {effect:.3f}: fork {calls[0]:,.0f} vs full {calls[1]:,.0f} "
        f"(full / fork = {calls[1] / calls[0]:.2f})"
    )


def main(argv: Sequence[str] | None = None) -> list[EnvResult]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"CI size: {SMOKE_SIZE}")
    parser.add_argument("--games", type=int, help=f"TextWorld games (default {FULL_SIZE['games']})")
    parser.add_argument("--bfcl-tasks", type=int, help=f"BFCL tasks (default {FULL_SIZE['bfcl_tasks']})")
    parser.add_argument("--regime", choices=sorted(REGIMES), action="append", help="default: all")
    parser.add_argument("--mistake-rate", type=float, help="custom regime: agent's chance of a wrong step")
    parser.add_argument("--auroc", type=float, help="custom regime: critic's AUROC at telling wrong steps from right")
    parser.add_argument("--center", type=float, help="custom regime: critic's score at p_fail 0.5")
    parser.add_argument("--slack", type=int, default=3, help="tool calls allowed beyond the oracle's")
    parser.add_argument("--seed", type=int, default=0, help="task seeds (the agent's and critic's draws)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    size = SMOKE_SIZE if args.smoke else FULL_SIZE
    games = args.games if args.games is not None else size["games"]
    bfcl_count = args.bfcl_tasks if args.bfcl_tasks is not None else size["bfcl_tasks"]
    regimes = _regimes(args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="real-envs-") as scratch:
        results = run_benchmark(games, bfcl_count, regimes, slack=args.slack, seed=args.seed, workdir=Path(scratch))
    elapsed = time.perf_counter() - started
    knobs = "; ".join(f"{r.name}: {_knobs(r)}" for r in regimes)
    print(f"real environments: {games} TextWorld games, {bfcl_count} BFCL tasks, slack {args.slack}, seed {args.seed}")
    print(f"regimes: {knobs}; {elapsed:.0f} s")
    print(format_table(results))
    if args.json is not None:
        payload = {"config": {k: str(v) for k, v in vars(args).items()}, "seconds": elapsed}
        args.json.write_text(json.dumps({**payload, "results": [r.to_dict() for r in results]}, indent=2) + "\n")
    return results


def _regimes(args: argparse.Namespace) -> list[Regime]:
    custom = {"mistake_rate": args.mistake_rate, "auroc": args.auroc, "center": args.center}
    if any(value is not None for value in custom.values()):
        if args.regime:
            raise SystemExit("--regime cannot be combined with --mistake-rate / --auroc / --center")
        base = REGIMES["help"]
        return [replace(base, name="custom", **{k: v for k, v in custom.items() if v is not None})]
    return [REGIMES[name] for name in (args.regime or REGIMES)]


if __name__ == "__main__":
    main()
