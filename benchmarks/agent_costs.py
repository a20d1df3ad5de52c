"""Measured costs: agent model calls of the real guarded agent per task and per correct decision, fork vs full.

    .venv/bin/python -m benchmarks.agent_costs [--smoke] [--tasks 300] [--reps 1000] [--cap 2000] [--seed 0]
        [--json FILE] [--plots DIR | --no-plots]

Why: ``benchmarks/decision.py`` counts calls with a cost model (:class:`~benchmarks.decision_model.ModelledCosts`).
Here the simulated agent of :mod:`critic_guard_langgraph.sim` (a stochastic scripted model in a real
``create_agent`` graph, ``SimCritic``, ROLLBACK with feedback) runs seeded pilots through the real
``CriticGuardMiddleware`` in both designs, and the model and the critic count their own calls per task:

* ``fork``: mode ``pilot``; the production run serves control and the middleware forks the treatment branch at the
  first flag (``ShadowRunner``, a real checkpointer). An unflagged task is one run.
* ``full`` (the paper's pilot): two independent full runs per task, a control run and a treatment run (attempt 0
  and 1 of the task: independent draws), through the same middleware (mode ``pilot``, ``design="full"``, one
  middleware per arm); the pair is opened and completed in the guard's store.

Then, per scenario, :class:`MeasuredCosts` (the empirical per-task call distributions, resampled by the task's
design and first-flag step) replaces the cost model in ``run_benchmark`` on the decision model that has the same
ground truth (the scenario's exact ``p, r, d``, flag rates and rerun correlation ``icc`` from
:func:`~benchmarks.sim_truth.sim_truth`),
and the report puts side by side, for each method: agent model calls per task and per CORRECT decision, fork vs
full, and what ``ModelledCosts`` would have said for the same tasks.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver
from numpy.typing import NDArray
from scipy import stats

from benchmarks.decision import PAPER, PILOT, SEQUENTIAL, BenchmarkConfig, BenchmarkResult, run_benchmark
from benchmarks.decision_model import (
    DESIGNS,
    CallCounts,
    Design,
    ModelledCosts,
    RunShape,
    Scenario,
    TaskOutcomes,
)
from benchmarks.sim_truth import SimTruth, sim_truth
from critic_guard.guard import CriticGuard
from critic_guard.types import Action, Arm
from critic_guard_langgraph import READ_ONLY, CriticGuardMiddleware
from critic_guard_langgraph.sim import (
    SCENARIOS,
    SimCounts,
    SimScenario,
    SimTask,
    sim_agent,
    sim_input,
    sim_judge,
    sim_tasks,
)
from critic_guard_langgraph.sim_critic import SimCritic

METHODS = (PAPER, PILOT, SEQUENTIAL)
NULL_TOLERANCE = 2e-3
"""A scenario whose Monte Carlo net effect is within this of 0 (4 standard errors at 1e6 tasks) is treated as
exactly null in the decision benchmark: every "helps" and every "harms" is then wrong."""


@dataclass(frozen=True, slots=True)
class TaskCost:
    """One task's measured pilot: outcomes, first flag (-1: none) and the calls its design cost."""

    task_id: str
    design: Design
    flagged: bool
    flag_step: int
    control_success: bool
    treatment_success: bool
    agent_calls: int
    critic_calls: int


def _guard(scenario: SimScenario, counts: SimCounts, workdir: Path, design: Design) -> CriticGuard:
    store = f"sqlite:///{workdir / f'{scenario.name}-{design}.db'}"
    return CriticGuard(
        SimCritic(scenario, counts),
        mode="pilot",
        design=design,
        policy=scenario.policy(),
        store=store,
        agent_name=f"sim-{scenario.name}",
    )


def run_fork(scenario: SimScenario, tasks: Sequence[SimTask], workdir: Path) -> list[TaskCost]:
    """The fork design: one production run per task, a shadow treatment branch from the first flag."""
    counts = SimCounts()
    guard = _guard(scenario, counts, workdir, "fork")
    try:
        middleware = CriticGuardMiddleware(guard, judge=sim_judge, shadow_tools={"record": READ_ONLY})
        agent = sim_agent(scenario, [middleware], InMemorySaver(), counts)
        for task in tasks:
            agent.invoke(sim_input(task), {"configurable": {"thread_id": task.task_id}}, context=task.as_metadata())
        middleware.close()  # waits for the verdicts and branches; the guard (not the middleware's) stays open
        out = []
        for pair in guard.pairs():
            if pair.control_success is None or pair.treatment_success is None or pair.task_id is None:
                raise RuntimeError(f"pair {pair.pair_id} has no outcome ({pair.status}: {pair.reason})")
            out.append(
                TaskCost(
                    task_id=pair.task_id,
                    design="fork",
                    flagged=pair.flagged,
                    flag_step=-1 if pair.fork_step is None else pair.fork_step,
                    control_success=pair.control_success,
                    treatment_success=pair.treatment_success,
                    agent_calls=counts.model[pair.task_id],
                    critic_calls=counts.critic[pair.task_id],
                )
            )
    finally:
        guard.close()
    return out


def run_full(scenario: SimScenario, tasks: Sequence[SimTask], workdir: Path) -> list[TaskCost]:
    """The full design: a control run and an independent treatment run per task; the pair goes to the store."""
    counts = SimCounts()
    guard = _guard(scenario, counts, workdir, "full")
    try:
        agents = {
            arm: sim_agent(
                scenario, [CriticGuardMiddleware(guard, arm=arm, outcomes="external")], InMemorySaver(), counts
            )
            for arm in (Arm.CONTROL, Arm.TREATMENT)
        }
        assert guard.store is not None
        out = []
        for task in tasks:
            runs: dict[Arm, str] = {}
            success: dict[Arm, bool] = {}
            for attempt, (arm, agent) in enumerate(agents.items()):
                config = {"configurable": {"thread_id": f"{task.task_id}-{arm.value}"}}
                state = agent.invoke(sim_input(task, attempt), config, context=task.as_metadata())
                [run] = [r for r in guard.store.runs_of_task(guard.guard_key, task.task_id) if r.arm is arm]
                runs[arm], success[arm] = run.run_id, sim_judge(task, state)
                guard.record_outcome(run.run_id, success[arm])
            acted = [s.step for s in guard.store.steps_of(runs[Arm.TREATMENT]) if s.action is not Action.NONE]
            guard.open_pair(
                runs[Arm.CONTROL],
                control_run_id=runs[Arm.CONTROL],
                treatment_run_id=runs[Arm.TREATMENT],
                flagged=bool(acted),
                task_id=task.task_id,
            )
            out.append(
                TaskCost(
                    task_id=task.task_id,
                    design="full",
                    flagged=bool(acted),
                    flag_step=min(acted, default=-1),
                    control_success=success[Arm.CONTROL],
                    treatment_success=success[Arm.TREATMENT],
                    agent_calls=counts.model[task.task_id],
                    critic_calls=counts.critic[task.task_id],
                )
            )
        if len(guard.pairs(status="complete")) != len(tasks):
            raise RuntimeError("some full-design pairs did not complete in the store")
    finally:
        guard.close()
    return out


class MeasuredCosts:
    """A :data:`~benchmarks.decision_model.CostFunction` that draws each simulated task's calls from measured tasks.

    A simulated task of design ``D`` whose first flag is at step ``s`` (-1: never flagged) gets the agent and
    critic calls of a measured task of design ``D`` drawn at random among those first flagged at ``s``; if none
    was, among those with the same flagged state; if none, among all of the design. Outcomes are not conditioned on
    (the decision model draws the flag step independently of the outcome). Deterministic: the draws are seeded by
    ``seed`` and the tasks' flag steps, so the same tasks always cost the same.
    """

    def __init__(self, measured: Mapping[Design, Sequence[TaskCost]], seed: int = 0) -> None:
        self.seed = seed
        self._pools: dict[Design, tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = {}
        for design, tasks in measured.items():
            if not tasks:
                raise ValueError(f"no measured tasks for design {design!r}")
            self._pools[design] = (
                np.array([t.flag_step if t.flagged else -1 for t in tasks], dtype=np.int64),
                np.array([t.agent_calls for t in tasks], dtype=np.int64),
                np.array([t.critic_calls for t in tasks], dtype=np.int64),
            )

    def __call__(self, tasks: TaskOutcomes) -> CallCounts:
        steps, agent_pool, critic_pool = self._pools[tasks.design]
        wanted = np.where(tasks.flagged, tasks.flag_step, -1)
        rng = np.random.default_rng([self.seed, zlib.crc32(wanted.tobytes()), DESIGNS.index(tasks.design)])
        agent = np.zeros(wanted.shape, dtype=np.int64)
        critic = np.zeros(wanted.shape, dtype=np.int64)
        for step in np.unique(wanted):
            pool = np.flatnonzero(steps == step)
            if pool.size == 0:
                pool = np.flatnonzero((steps >= 0) == (step >= 0))
            if pool.size == 0:
                pool = np.arange(steps.size)
            where = wanted == step
            picks = pool[rng.integers(pool.size, size=int(where.sum()))]
            agent[where], critic[where] = agent_pool[picks], critic_pool[picks]
        return CallCounts(agent=agent, critic=critic)


def decision_scenario(truth: SimTruth) -> Scenario:
    """The decision model's world with the simulator's exact ground truth (fork design: ``p``, flag rates, r, d).

    ``tpr`` / ``fpr`` are the rates at which failing / succeeding control runs are flagged; ``r_flag = r / tpr``,
    ``d_flag = d / fpr``. A net effect within :data:`NULL_TOLERANCE` of zero is made exactly null (``d_flag``
    adjusted), so that the benchmark counts any "helps" or "harms" there as wrong.
    """
    sc = truth.scenario
    r, d = truth.r, truth.d
    null = abs(truth.net) < NULL_TOLERANCE
    if null:
        d = truth.p * r / (1.0 - truth.p)
    return Scenario(
        sc.name,
        sc.description + (" (treated as exactly null)" if null else ""),
        p=truth.p,
        tpr=truth.tpr,
        fpr=truth.fpr,
        r_flag=min(1.0, r / truth.tpr),
        d_flag=min(1.0, d / truth.fpr),
    )


def measured_shape(scenario: SimScenario, fork: Sequence[TaskCost]) -> RunShape:
    """The run length and the distribution of the measured first-flag steps (fork design) for the decision model."""
    steps = np.array([t.flag_step for t in fork if t.flagged], dtype=np.int64)
    if steps.size == 0:
        return RunShape.make(scenario.steps, scenario.min_step)
    pmf = np.bincount(steps, minlength=scenario.steps) / steps.size
    return RunShape(scenario.steps, tuple(float(v) for v in pmf))


def _outcomes(tasks: Sequence[TaskCost], design: Design, shape: RunShape) -> TaskOutcomes:
    return TaskOutcomes(
        design=design,
        control=np.array([t.control_success for t in tasks]),
        treatment=np.array([t.treatment_success for t in tasks]),
        flagged=np.array([t.flagged for t in tasks]),
        flag_step=np.array([t.flag_step for t in tasks], dtype=np.int64),
        shape=shape,
    )


@dataclass(frozen=True)
class AgentCostsConfig:
    """Sizes and seed of one run (``smoke``: the CI size)."""

    tasks: int = 300
    replications: int = 1000
    task_cap: int = 2000
    seed: int = 0
    scenarios: tuple[SimScenario, ...] = SCENARIOS

    @classmethod
    def smoke(cls, seed: int = 0) -> AgentCostsConfig:
        return cls(tasks=12, replications=60, task_cap=300, seed=seed, scenarios=SCENARIOS[:2])


def _cells(tasks: Sequence[TaskCost]) -> dict[str, float]:
    n = len(tasks)
    n01 = sum(not t.control_success and t.treatment_success for t in tasks)
    n10 = sum(t.control_success and not t.treatment_success for t in tasks)
    return {"p": sum(not t.control_success for t in tasks) / n, "net": (n01 - n10) / n, "n": n}


def scenario_report(config: AgentCostsConfig, index: int, workdir: Path) -> dict[str, Any]:
    """Measure both designs on ``config.tasks`` tasks, then the decision benchmark with measured and modelled costs.

    Each scenario gets its own tasks: with shared tasks (and the scenarios' shared model seed) the scenarios would
    draw the same random numbers, and their sampling errors would all go the same way.
    """
    scenario = config.scenarios[index]
    tasks = sim_tasks(config.tasks, seed=1000 * config.seed + index, steps=scenario.steps)
    started = time.perf_counter()
    measured: dict[Design, list[TaskCost]] = {"fork": run_fork(scenario, tasks, workdir)}
    fork_seconds = time.perf_counter() - started
    measured["full"] = run_full(scenario, tasks, workdir)
    full_seconds = time.perf_counter() - started - fork_seconds
    truth = {design: sim_truth(scenario, design) for design in DESIGNS}
    shape = measured_shape(scenario, measured["fork"])
    modelled = ModelledCosts()
    per_task: dict[str, dict[str, float]] = {}
    for design in DESIGNS:
        rows = measured[design]
        model = modelled(_outcomes(rows, design, shape))
        per_task[design] = {
            "agent_calls": float(np.mean([t.agent_calls for t in rows])),
            "critic_calls": float(np.mean([t.critic_calls for t in rows])),
            "modelled_agent_calls": float(model.agent.mean()),
            "modelled_critic_calls": float(model.critic.mean()),
            "flag_rate": float(np.mean([t.flagged for t in rows])),
            **_cells(rows),
        }
        failures = sum(not t.control_success for t in rows)
        per_task[design]["p_vs_truth_pvalue"] = float(stats.binomtest(failures, len(rows), truth[design].p).pvalue)
    world = decision_scenario(truth["fork"])
    bench = BenchmarkConfig(
        replications=config.replications,
        task_cap=config.task_cap,
        icc=truth["fork"].icc,  # how much two runs of one task agree (0 unless the scenario has task_spread)
        shape=shape,
        seed=config.seed,
        scenarios=(world,),
    )
    decisions = {
        "measured": run_benchmark(bench, cost=MeasuredCosts(measured, seed=config.seed)),
        "modelled": run_benchmark(bench, cost=modelled),
    }
    return {
        "scenario": asdict(scenario),
        "truth": {
            d: {k: getattr(t, k) for k in ("p", "r", "d", "net", "p_star", "flag_rate", "icc")}
            for d, t in truth.items()
        },
        "decision_world": {"p": world.p, "r": world.r, "d": world.d, "net": world.net, "truth": world.truth},
        "seconds": {"fork": fork_seconds, "full": full_seconds},
        "per_task": per_task,
        "per_decision": {label: _per_decision(result) for label, result in decisions.items()},
    }


def _per_decision(result: BenchmarkResult) -> dict[str, dict[str, dict[str, float]]]:
    [scenario] = result.scenarios
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in METHODS:
        for design in DESIGNS:
            m = scenario.method(method, design)
            correct = m["correct_rate"]
            out.setdefault(method, {})[design] = {
                "correct_rate": correct,
                "wrong_rate": m["wrong_rate"],
                "tasks_mean": m["tasks_mean"],
                "agent_calls_mean": m["agent_calls_mean"],
                "agent_calls_per_correct": m["agent_calls_mean"] / correct if correct > 0 else float("inf"),
            }
    return out


def run(config: AgentCostsConfig) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agent-costs-") as tmp:
        reports = [scenario_report(config, i, Path(tmp)) for i in range(len(config.scenarios))]
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "scenarios"},
        "labels": {
            "MEASURED": "agent/critic calls per task: counted in the model and the critic of the real guarded agent",
            "SIMULATED": "decisions: the decision model with the simulator's exact ground truth",
        },
        "scenarios": reports,
        "seconds": time.perf_counter() - started,
    }


def _ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}x" if b > 0 and np.isfinite(a) and np.isfinite(b) else "    -"


def format_report(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"agent costs: {cfg['tasks']} tasks per design and scenario through the real guarded agent (MEASURED calls); "
        f"decisions over {cfg['replications']} replications of the decision model with the same ground truth "
        f"(SIMULATED), seed {cfg['seed']}",
    ]
    for s in report["scenarios"]:
        sc, t, pt = s["scenario"], s["truth"]["fork"], s["per_task"]
        fork, full = pt["fork"], pt["full"]
        lines += [
            "",
            f"== {sc['name']}: {sc['description']}",
            f"   truth (sim_truth, 1e6 tasks): p={t['p']:.3f} r={t['r']:.3f} d={t['d']:.3f} "
            f"p_star={t['p_star']:.3f} net={t['net']:+.4f} flag rate={t['flag_rate']:.3f} rerun icc={t['icc']:.2f}",
            f"   measured pairs (n={fork['n']}): fork p={fork['p']:.3f} net={fork['net']:+.3f} | "
            f"full p={full['p']:.3f} net={full['net']:+.3f}  (p vs truth: binomial P={fork['p_vs_truth_pvalue']:.2f}, "
            f"{full['p_vs_truth_pvalue']:.2f})  "
            f"[graph time: fork {s['seconds']['fork']:.1f} s, full {s['seconds']['full']:.1f} s]",
            "   per task                     fork     full  full/fork |  modelled fork   full  full/fork",
            f"   agent model calls        {fork['agent_calls']:7.2f}  {full['agent_calls']:7.2f}  "
            f"{_ratio(full['agent_calls'], fork['agent_calls'])}   |  "
            f"{fork['modelled_agent_calls']:12.2f} {full['modelled_agent_calls']:6.2f}  "
            f"{_ratio(full['modelled_agent_calls'], fork['modelled_agent_calls'])}",
            f"   critic calls             {fork['critic_calls']:7.2f}  {full['critic_calls']:7.2f}  "
            f"{_ratio(full['critic_calls'], fork['critic_calls'])}   |  "
            f"{fork['modelled_critic_calls']:12.2f} {full['modelled_critic_calls']:6.2f}  "
            f"{_ratio(full['modelled_critic_calls'], fork['modelled_critic_calls'])}",
            "   per CORRECT decision     correct% fork/full   agent calls/correct: fork     full  full/fork"
            "   (modelled costs: fork   full  full/fork)",
        ]
        for method in METHODS:
            m, o = s["per_decision"]["measured"][method], s["per_decision"]["modelled"][method]
            lines.append(
                f"   {method:<22} {100 * m['fork']['correct_rate']:5.1f} / {100 * m['full']['correct_rate']:5.1f}"
                f"        {m['fork']['agent_calls_per_correct']:9.0f} {m['full']['agent_calls_per_correct']:8.0f}"
                f"  {_ratio(m['full']['agent_calls_per_correct'], m['fork']['agent_calls_per_correct'])}"
                f"   {o['fork']['agent_calls_per_correct']:20.0f} {o['full']['agent_calls_per_correct']:6.0f}"
                f"  {_ratio(o['full']['agent_calls_per_correct'], o['fork']['agent_calls_per_correct'])}"
            )
    lines += ["", f"total {report['seconds']:.0f} s"]
    return "\n".join(lines)


def plot_calls_per_correct(report: dict[str, Any], path: Path) -> None:
    """Bars: measured agent model calls per correct decision, fork vs full, per scenario and method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = report["scenarios"]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.6), squeeze=False)
    for ax, s in zip(axes[0], scenarios, strict=True):
        x = np.arange(len(METHODS))
        for k, design in enumerate(DESIGNS):
            values = [s["per_decision"]["measured"][m][design]["agent_calls_per_correct"] for m in METHODS]
            ax.bar(x + (k - 0.5) * 0.38, [v if np.isfinite(v) else 0 for v in values], 0.38, label=design)
        ax.set_xticks(x, [m.replace(" ", "\n") for m in METHODS])
        ax.set_title(s["scenario"]["name"], fontsize=10)
        ax.set_yscale("log")
    axes[0][0].set_ylabel("agent model calls per correct decision")
    axes[0][0].legend()
    fig.suptitle("Measured agent calls (real guarded agent) per correct decision", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="CI size: 12 tasks, 60 replications, 2 scenarios")
    parser.add_argument("--tasks", type=int, help="tasks per design and scenario through the graph (default 300)")
    parser.add_argument("--reps", type=int, help="replications of the decision benchmark (default 1000)")
    parser.add_argument("--cap", type=int, help="task cap of the sequential design (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the full report as JSON")
    parser.add_argument("--plots", type=Path, default=Path("benchmarks/plots"), help="where the PNG goes")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    config = AgentCostsConfig.smoke(args.seed) if args.smoke else AgentCostsConfig(seed=args.seed)
    overrides = {"tasks": args.tasks, "replications": args.reps, "task_cap": args.cap}
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    report = run(config)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    if not args.no_plots:
        plot_calls_per_correct(report, args.plots / "agent_calls_per_correct.png")
    return report


if __name__ == "__main__":
    main()
