"""Guarded pilots on real environments: TextWorld and BFCL v4 multi-turn, ``fork`` design against ``full`` runs.

    .venv/bin/python -m benchmarks.real_envs [--smoke] [--json FILE] [--games 40] [--bfcl-tasks 200]
        [--mistake-rate 0.1] [--auroc 0.9] [--slack 3] [--seed 0]

Each environment's tasks run through the same guarded ``create_agent`` graph (``benchmarks/envs/agent.py``): the
scripted agent plays the environment's oracle with injected mistakes, the critic scores every proposed step with
noise of a given AUROC, the policy is the paper's (tau 0.6, rollback with feedback, ``min_step`` 2, 3
interventions), and the judge is the environment's own (TextWorld ``won``; BFCL's official ``multi_turn_checker``).
Tasks: TextWorld ``tw-cooking`` games of seeds 1..``--games`` generated offline with ``make_game`` (cached in
``.cache/textworld``); the first ``--bfcl-tasks`` tasks of ``multi_turn_base`` shipped in ``bfcl-eval``. A task's
step budget is its oracle plan (TextWorld) or ground-truth calls (BFCL) plus ``--slack`` tool calls.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.envs.bfcl_env import BfclEnv, load_tasks
from benchmarks.envs.pilot import DESIGNS, PilotResult, Task, run_pilot
from benchmarks.envs.scripted import OracleAgent, OracleCritic
from benchmarks.envs.textworld_env import TextWorldEnv, make_game
from critic_guard.stats import analyze
from critic_guard.stats.counts import Estimate

CACHE: Final = Path(__file__).resolve().parents[1] / ".cache" / "textworld"
FULL_SIZE: Final = {"games": 40, "bfcl_tasks": 200}
SMOKE_SIZE: Final = {"games": 2, "bfcl_tasks": 4}


@dataclass(frozen=True, slots=True)
class EnvResult:
    """Both designs' pilots on one environment."""

    env: str
    results: dict[str, PilotResult]

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, **{design: _summary(result) for design, result in self.results.items()}}


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
    games: int, bfcl_count: int, *, mistake_rate: float, auroc: float, slack: int, seed: int, workdir: Path
) -> list[EnvResult]:
    """Both environments, both designs; SQLite stores and checkpoints under ``workdir``."""
    agent, critic = OracleAgent(mistake_rate=mistake_rate), OracleCritic(auroc=auroc)
    suites = {"textworld": textworld_tasks(games, slack, seed), "bfcl": bfcl_tasks(bfcl_count, slack, seed)}
    return [
        EnvResult(
            name,
            {design: run_pilot(tasks, design, workdir / name, agent=agent, critic=critic) for design in DESIGNS},
        )
        for name, tasks in suites.items()
    ]


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
        "| env | design | tasks | flagged | incomplete | n00 n01 n10 n11 | p [95% CrI] | p_star [95% CrI] "
        "| net [95% Tango] | verdict | calls/task | seconds |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    ratios = []
    for env in results:
        for design, result in env.results.items():
            s = _summary(result)
            lines.append(
                f"| {env.env} | {design} | {s['tasks']} | {s['flagged']} | {s['incomplete']} "
                f"| {s['n00']} {s['n01']} {s['n10']} {s['n11']} "
                f"| {_num(s['p'])} [{_num(s['p_credible'][0])}, {_num(s['p_credible'][1])}] "
                f"| {_num(s['p_star'])} [{_num(s['p_star_credible'][0])}, {_num(s['p_star_credible'][1])}] "
                f"| {_num(s['net'])} [{_num(s['net_ci_low'])}, {_num(s['net_ci_high'])}] | {s['verdict']} "
                f"| {s['model_calls_per_task']:.1f} | {s['seconds']:.0f} |"
            )
        fork, full = env.results["fork"], env.results["full"]
        ratios.append(
            f"{env.env}: agent model calls per task fork {fork.calls_per_task:.1f} vs full {full.calls_per_task:.1f} "
            f"(full / fork = {full.calls_per_task / fork.calls_per_task:.2f})"
        )
    return "\n".join([*lines, "", *ratios])


def main(argv: Sequence[str] | None = None) -> list[EnvResult]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=f"CI size: {SMOKE_SIZE}")
    parser.add_argument("--games", type=int, help=f"TextWorld games (default {FULL_SIZE['games']})")
    parser.add_argument("--bfcl-tasks", type=int, help=f"BFCL tasks (default {FULL_SIZE['bfcl_tasks']})")
    parser.add_argument("--mistake-rate", type=float, default=0.1, help="agent: chance of a wrong step")
    parser.add_argument("--auroc", type=float, default=0.9, help="critic: AUROC at telling wrong steps from right")
    parser.add_argument("--slack", type=int, default=3, help="tool calls allowed beyond the oracle's")
    parser.add_argument("--seed", type=int, default=0, help="task seeds (the agent's and critic's draws)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    size = SMOKE_SIZE if args.smoke else FULL_SIZE
    games = args.games if args.games is not None else size["games"]
    bfcl_count = args.bfcl_tasks if args.bfcl_tasks is not None else size["bfcl_tasks"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="real-envs-") as scratch:
        results = run_benchmark(
            games,
            bfcl_count,
            mistake_rate=args.mistake_rate,
            auroc=args.auroc,
            slack=args.slack,
            seed=args.seed,
            workdir=Path(scratch),
        )
    elapsed = time.perf_counter() - started
    print(
        f"real environments: mistake rate {args.mistake_rate}, critic AUROC {args.auroc}, slack {args.slack}, "
        f"seed {args.seed}; {elapsed:.0f} s"
    )
    print(format_table(results))
    if args.json is not None:
        payload = {"config": {k: str(v) for k, v in vars(args).items()}, "seconds": elapsed}
        args.json.write_text(json.dumps({**payload, "results": [r.to_dict() for r in results]}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
