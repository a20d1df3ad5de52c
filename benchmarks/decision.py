"""Decision quality: the paper's rule, fixed pilots, the sequential fork design and the oracle SPRT, side by side.

    .venv/bin/python -m benchmarks.decision [--smoke] [--json FILE] [--plots DIR | --no-plots] [--reps 2000]
        [--cap 2000] [--icc 0.5] [--steps 10] [--min-step 2] [--flag-steps uniform|early|late] [--seed 0]

For each scenario of :mod:`benchmarks.decision_model` (a world with known p, r, d), every method decides whether
to deploy the intervention, over ``--reps`` seeded replications:

1. **paper's rule**: 50 tasks, two full runs per task, deploy iff ``p_hat > p_star_hat``. Undefined estimates (no
   control failure, no control success, no flip at all) mean do not deploy. It never says "inconclusive": "do not
   deploy" is its claim that ``p <= p_star``. Shown for the fork design too, to separate rule from design.
2. **fixed pilot**: the same 50 tasks, fork and full design, verdict of ``critic_guard.stats.analyze`` (Tango score
   interval and exact McNemar test at 95%): helps / harms / inconclusive.
3. **sequential**: ``run_monitor`` (the harm and benefit e-processes of ``MonitorState``) on the pairs in task
   order, stopping at the first proof (harm wins a tie, as in the lifecycle) or inconclusive at ``--cap`` tasks:
   at alpha per e-process ("seq.", the lifecycle's ``alpha_per_side=True``) and, for forks, at alpha/2 per side
   ("seq. a/2", the lifecycle's default), which bounds the total chance of a wrong proof by alpha.
4. **oracle SPRT**: ``OracleSPRT`` with the fork design's true p, r, d, at beta 0.2 and at the alpha and beta each
   sequential fork variant achieved (matched error rates, for ``E[N]/E[N_oracle]``). Undefined for the null scenario.

The fixed pilots' wrong/right rates are also computed exactly (every table of ``n01``, ``n10`` enumerated), so the
check "wrong <= alpha" has no simulation noise for them. Connor's formula gives the tasks each design needs for the
same fixed-pilot decision at 80% power: the "planned" calls ratio, also swept over the rerun correlation.

A decision is **wrong** when it claims the wrong sign: "helps" (deploy) when ``net <= 0``, "harms" when
``net >= 0``, the paper's "does not help" when ``net > 0``. In the null scenario every "helps" and every "harms" is
wrong; the paper's "does not help" is true there. **Correct** is the true sign (or, in the null scenario,
inconclusive / does not help).

Decisions and task counts are SIMULATED. Agent model calls and critic calls are MODELLED (``ModelledCosts``: fixed run
length, first-flag step drawn from ``--flag-steps``); pass another :data:`CostFunction` to ``run_benchmark`` to use
measured calls.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

from benchmarks.decision_model import (
    DESIGNS,
    SCENARIOS,
    CostFunction,
    Design,
    ModelledCosts,
    RunShape,
    Scenario,
    binormal_auroc,
    cell_probabilities,
    rates_of_cells,
    simulate_tasks,
)
from critic_guard.stats import (
    OracleSPRT,
    PairedCounts,
    PilotConclusion,
    analyze,
    mcnemar_sample_size,
    run_monitor,
    verdict_of,
)

HELPS, INCONCLUSIVE, HARMS, NO_GO = 1, 0, -1, -2  # NO_GO: the paper's "do not deploy" (claims p <= p_star)
VERDICT_CODE = {PilotConclusion.HELPS: HELPS, PilotConclusion.HARMS: HARMS, PilotConclusion.INCONCLUSIVE: INCONCLUSIVE}
_CHUNK = 500  # replications simulated at once (bounds memory: a few arrays of chunk x cap)
_ANALYZE_DRAWS = 1000  # posterior draws per distinct table; the verdict does not depend on them
COST_LABEL = "MODELLED"
DECISION_LABEL = "SIMULATED"

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything that fixes a run of the benchmark (seeded: the same config gives the same numbers)."""

    replications: int = 2000
    pilot_tasks: int = 50
    task_cap: int = 2000
    curve_sizes: tuple[int, ...] = (25, 50, 100, 200, 400, 800)
    alpha: float = 0.05
    level: float = 0.95
    oracle_beta: float = 0.2
    planning_power: float = 0.8
    icc: float = 0.5
    shape: RunShape = field(default_factory=RunShape.make)
    seed: int = 0
    scenarios: tuple[Scenario, ...] = SCENARIOS

    def __post_init__(self) -> None:
        if self.replications < 1 or self.pilot_tasks < 1 or self.task_cap < 1:
            raise ValueError("replications, pilot_tasks and task_cap must be positive")
        if not self.curve_sizes or min(self.curve_sizes) < 1:
            raise ValueError("curve_sizes must be positive task counts")

    @property
    def horizon(self) -> int:
        """Tasks simulated per replication: enough for every pilot size and the sequential cap."""
        return max(self.task_cap, self.pilot_tasks, *self.curve_sizes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replications": self.replications,
            "pilot_tasks": self.pilot_tasks,
            "task_cap": self.task_cap,
            "curve_sizes": list(self.curve_sizes),
            "alpha": self.alpha,
            "level": self.level,
            "oracle_beta": self.oracle_beta,
            "planning_power": self.planning_power,
            "icc": self.icc,
            "steps_per_run": self.shape.steps_per_run,
            "flag_step_pmf": list(self.shape.flag_step_pmf),
            "seed": self.seed,
        }


SMOKE = BenchmarkConfig(replications=200, task_cap=600, curve_sizes=(25, 50, 100))


# ---- decisions -------------------------------------------------------------------------------------------------


def wrong(verdicts: IntArray, truth: int) -> NDArray[np.bool_]:
    """Whether each verdict claims the wrong sign (module docstring)."""
    wrong_claims = [c for c, bad in ((HELPS, truth <= 0), (HARMS, truth >= 0), (NO_GO, truth > 0)) if bad]
    return np.isin(verdicts, wrong_claims)


def correct(verdicts: IntArray, truth: int) -> NDArray[np.bool_]:
    """Whether each verdict is the right answer: the true sign, or (null) no claim of an effect."""
    right = [HELPS] if truth > 0 else ([HARMS, NO_GO] if truth < 0 else [INCONCLUSIVE, NO_GO])
    return np.isin(verdicts, right)


def paper_rule(counts: IntArray) -> IntArray:
    """The paper's rule on each table (rows n00, n01, n10, n11): HELPS iff p > p_star, else NO_GO (also if undefined).

    Evaluated by the engine's ``PairedCounts`` estimates (``p``, ``p_star``) once per distinct table.
    """
    tables, inverse = np.unique(counts, axis=0, return_inverse=True)
    codes = np.empty(len(tables), dtype=np.int64)
    for i, row in enumerate(tables):
        c = PairedCounts(*(int(v) for v in row))
        p, p_star = c.p.value, c.p_star.value
        codes[i] = HELPS if p is not None and p_star is not None and p > p_star else NO_GO
    return codes[inverse.reshape(-1)]


@functools.lru_cache(maxsize=200_000)
def _pilot_verdict(recoveries: int, disruptions: int, n: int, level: float, full_report: bool) -> int:
    """The verdict for any table with these (n01, n10, n): Tango's interval depends on nothing else.

    Analyses the table ``(n - n01 - n10, n01, n10, 0)``; ``full_report`` runs ``analyze`` and reads its verdict,
    otherwise only what that verdict is computed from, ``verdict_of`` (the Tango interval and the exact McNemar test;
    faster, for the curves).
    """
    counts = PairedCounts(n - recoveries - disruptions, recoveries, disruptions, 0)
    if full_report:
        return VERDICT_CODE[analyze(counts, level=level, draws=_ANALYZE_DRAWS).verdict]
    return VERDICT_CODE[verdict_of(counts, level)[0]]


def pilot_verdicts(counts: IntArray, level: float, full_report: bool) -> IntArray:
    """The engine's fixed-pilot verdict on each table (rows n00, n01, n10, n11); see :func:`_pilot_verdict`."""
    key = np.column_stack([counts[:, 1], counts[:, 2], counts.sum(axis=1)])
    keys, inverse = np.unique(key, axis=0, return_inverse=True)
    codes = np.asarray([_pilot_verdict(int(b), int(c), int(n), level, full_report) for b, c, n in keys])
    return codes[inverse.reshape(-1)].astype(np.int64)


def sequential_decisions(x: NDArray[np.float64], alpha: float) -> tuple[IntArray, IntArray]:
    """Verdict and tasks used per row of pairs ``x`` (``pair_to_x`` values in task order), via ``run_monitor``.

    Stops at the first proof; harm wins a tie (the lifecycle checks it first). No proof within the row's length:
    inconclusive, all tasks used.
    """
    paths = run_monitor(x, alpha=alpha, split=False, band=False)  # alpha per e-process; the caller halves it
    harm, benefit = paths.harm_times(), paths.benefit_times()
    harm_first = (harm > 0) & ((benefit == 0) | (harm <= benefit))
    benefit_first = (benefit > 0) & ~harm_first
    verdicts = np.where(harm_first, HARMS, np.where(benefit_first, HELPS, INCONCLUSIVE)).astype(np.int64)
    tasks = np.where(harm_first, harm, np.where(benefit_first, benefit, x.shape[1])).astype(np.int64)
    return verdicts, tasks


# ---- results -------------------------------------------------------------------------------------------------


def _upper_bound(k: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate from k events in n trials."""
    return 1.0 if k == n else float(stats.beta.ppf(level, k + 1, n - k))


def _lower_bound(k: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound on a rate from k events in n trials."""
    return 0.0 if k == 0 else float(stats.beta.ppf(1.0 - level, k, n - k + 1))


@dataclass(frozen=True)
class MethodResult:
    """Per-replication outcomes of one method in one scenario."""

    method: str
    design: Design
    verdicts: IntArray
    tasks: IntArray
    agent_calls: NDArray[np.float64]
    critic_calls: NDArray[np.float64]
    note: str = ""

    def summary(self, truth: int) -> dict[str, Any]:
        n = len(self.verdicts)
        n_wrong = int(wrong(self.verdicts, truth).sum())
        return {
            "method": self.method,
            "design": self.design,
            "note": self.note,
            "replications": n,
            "wrong_rate": n_wrong / n,
            "wrong_rate_upper95": _upper_bound(n_wrong, n),
            "wrong_rate_lower95": _lower_bound(n_wrong, n),
            "correct_rate": float(correct(self.verdicts, truth).mean()),
            "inconclusive_rate": float((self.verdicts == INCONCLUSIVE).mean()),
            "deploy_rate": float((self.verdicts == HELPS).mean()),
            "reject_rate": float(np.isin(self.verdicts, (HARMS, NO_GO)).mean()),
            "false_helps_rate": float(((self.verdicts == HELPS) & (truth <= 0)).mean()),
            "false_harms_rate": float(((self.verdicts == HARMS) & (truth >= 0)).mean()),
            "tasks_mean": float(self.tasks.mean()),
            "tasks_median": float(np.median(self.tasks)),
            "tasks_p90": float(np.quantile(self.tasks, 0.9)),
            "agent_calls_mean": float(self.agent_calls.mean()),
            "critic_calls_mean": float(self.critic_calls.mean()),
        }


def _find(summaries: list[dict[str, Any]], name: str, design: str) -> dict[str, Any]:
    for m in summaries:
        if m["method"] == name and m["design"] == design:
            return m
    raise KeyError((name, design))


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    truth: dict[str, Any]
    methods: list[dict[str, Any]]
    ratios: dict[str, Any]
    planning: dict[str, Any]
    curve: dict[str, dict[str, dict[str, list[float]]]]
    pilots: list[dict[str, Any]]

    def method(self, name: str, design: str) -> dict[str, Any]:
        """The summary of one method and design (the first, if the method has several rows, e.g. the oracle)."""
        return _find(self.methods, name, design)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.scenario.name,
            "description": self.scenario.description,
            "truth": self.truth,
            "methods": self.methods,
            "ratios": self.ratios,
            "planning": self.planning,
            "curve": self.curve,
            "pilots": self.pilots,
        }


@dataclass(frozen=True)
class BenchmarkResult:
    config: BenchmarkConfig
    scenarios: list[ScenarioResult]
    seconds: float

    def scenario(self, name: str) -> ScenarioResult:
        for s in self.scenarios:
            if s.scenario.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "labels": {
                DECISION_LABEL: "verdicts, wrong/inconclusive rates, tasks: seeded simulation of the model",
                COST_LABEL: "agent_calls, critic_calls, calls ratios: cost model, not measured",
            },
            "seconds": self.seconds,
            "scenarios": [s.to_dict() for s in self.scenarios],
            "targets": targets(self),
        }


# ---- one scenario ----------------------------------------------------------------------------------------------

PAPER, PILOT, SEQUENTIAL, SEQUENTIAL_SPLIT, ORACLE = (
    "paper rule",
    "fixed pilot",
    "sequential",
    "seq. a/2",
    "oracle SPRT",
)


@dataclass
class _DesignRun:
    """Per-replication arrays for one design, accumulated over chunks."""

    counts: dict[int, list[IntArray]] = field(default_factory=dict)  # pilot size -> [chunk tables]
    agent_at: dict[int, list[IntArray]] = field(default_factory=dict)
    critic_at: dict[int, list[IntArray]] = field(default_factory=dict)
    seq: dict[float, list[tuple[IntArray, IntArray, IntArray, IntArray]]] = field(default_factory=dict)  # by alpha


def _simulate_design(
    config: BenchmarkConfig, scenario_index: int, design: Design, cost: CostFunction
) -> tuple[_DesignRun, IntArray]:
    """Simulate ``replications x horizon`` tasks in chunks; keep prefix tables, prefix calls and sequential runs.

    Also returns the first replication's task cells (for the one-pilot-per-size plot).
    """
    scenario = config.scenarios[scenario_index]
    sizes = sorted({config.pilot_tasks, *config.curve_sizes})
    out = _DesignRun()
    first_cells: IntArray | None = None
    for chunk, start in enumerate(range(0, config.replications, _CHUNK)):
        rows = min(_CHUNK, config.replications - start)
        rng = np.random.default_rng([config.seed, scenario_index, DESIGNS.index(design), chunk])
        tasks = simulate_tasks(scenario, design, config.icc, (rows, config.horizon), rng, config.shape)
        cells = tasks.cell_index
        if first_cells is None:
            first_cells = cells[0]
        calls = cost(tasks)
        agent, critic = np.cumsum(calls.agent, axis=1), np.cumsum(calls.critic, axis=1)
        for n in sizes:
            table = np.stack([(cells[:, :n] == k).sum(axis=1) for k in range(4)], axis=1).astype(np.int64)
            out.counts.setdefault(n, []).append(table)
            out.agent_at.setdefault(n, []).append(agent[:, n - 1])
            out.critic_at.setdefault(n, []).append(critic[:, n - 1])
        x = (tasks.control[:, : config.task_cap].astype(float) - tasks.treatment[:, : config.task_cap] + 1.0) / 2.0
        for alpha in _sequential_alphas(config, design):
            verdicts, used = sequential_decisions(x, alpha)
            picked = np.arange(rows), used - 1
            out.seq.setdefault(alpha, []).append((verdicts, used, agent[picked], critic[picked]))
    assert first_cells is not None
    return out, first_cells


def _sequential_alphas(config: BenchmarkConfig, design: Design) -> tuple[float, ...]:
    """The product's setting (alpha per e-process) and, for forks, alpha/2 per side (total error <= alpha)."""
    return (config.alpha, config.alpha / 2) if design == "fork" else (config.alpha,)


def _matched_beta(sequential: dict[str, Any]) -> float:
    """The oracle's beta matched to a sequential method: its rate of not reaching the right decision.

    Clipped to [0.001, 0.49] (``OracleSPRT`` needs beta in (0, 0.5); 0.001 stands for "never missed").
    """
    return float(np.clip(1.0 - sequential["correct_rate"], 0.001, 0.49))


def exact_pilot_rates(cells: NDArray[np.float64], n: int, level: float, truth: int) -> dict[str, float]:
    """Exact wrong, right and inconclusive probabilities of the fixed pilot of ``n`` tasks, without simulation.

    The verdict depends on (n01, n10) only, which are trinomial(n; p01, p10); the sum runs over all of them.
    """
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    inside = b + c <= n
    b, c = b[inside], c[inside]
    p01, p10 = float(cells[1]), float(cells[2])
    log_prob = (
        special.gammaln(n + 1)
        - special.gammaln(b + 1)
        - special.gammaln(c + 1)
        - special.gammaln(n - b - c + 1)
        + special.xlogy(b, p01)
        + special.xlogy(c, p10)
        + special.xlogy(n - b - c, 1.0 - p01 - p10)
    )
    weight = np.exp(log_prob)
    verdicts = np.asarray([_pilot_verdict(int(i), int(j), n, level, False) for i, j in zip(b, c, strict=True)])
    return {
        "exact_wrong_rate": float(weight[wrong(verdicts, truth)].sum()),
        "exact_correct_rate": float(weight[correct(verdicts, truth)].sum()),
        "exact_inconclusive_rate": float(weight[verdicts == INCONCLUSIVE].sum()),
    }


def _cat(parts: list[IntArray]) -> IntArray:
    return np.concatenate(parts).astype(np.int64)


def _oracle(
    config: BenchmarkConfig, scenario: Scenario, alpha: float, beta: float, seed: int
) -> tuple[MethodResult, float]:
    """Oracle SPRT on the fork design's true rates; returns the method result and Wald's E[tasks].

    It knows the direction of the effect, so it can never claim the wrong sign: its errors are "no decision".
    """
    fork = rates_of_cells(cell_probabilities(scenario, "fork", config.icc))
    oracle = OracleSPRT.from_rates(fork["p"], fork["r"], fork["d"], alpha=alpha, beta=beta)
    sim = oracle.simulate(runs=config.replications, seed=seed)
    verdicts = np.where(sim.accepted_h1, scenario.truth, INCONCLUSIVE).astype(np.int64)
    per_task_agent = ModelledCosts.expected_agent_calls(scenario, "fork", config.shape)
    flag_rate = scenario.p * scenario.tpr + (1.0 - scenario.p) * scenario.fpr
    per_task_critic = config.shape.steps_per_run + flag_rate
    result = MethodResult(
        method=ORACLE,
        design="fork",
        verdicts=verdicts,
        tasks=sim.tasks,
        agent_calls=(sim.tasks * per_task_agent).astype(np.float64),
        critic_calls=(sim.tasks * per_task_critic).astype(np.float64),
        note=f"a={alpha:g}, beta {beta:.3f}",
    )
    return result, oracle.expected_tasks()


def _truth(config: BenchmarkConfig, scenario: Scenario) -> dict[str, Any]:
    designs = {}
    for design in DESIGNS:
        cells = cell_probabilities(scenario, design, config.icc)
        designs[design] = {"cells": [float(c) for c in cells], **rates_of_cells(cells)}
    return {
        "p": scenario.p,
        "r": scenario.r,
        "d": scenario.d,
        "p_star": scenario.p_star,
        "net": scenario.net,
        "sign": scenario.truth,
        "tpr": scenario.tpr,
        "fpr": scenario.fpr,
        "auroc_binormal": binormal_auroc(scenario.tpr, scenario.fpr),
        "r_flag": scenario.r_flag,
        "d_flag": scenario.d_flag,
        "designs": designs,
    }


ICC_SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0)


def _planned(config: BenchmarkConfig, scenario: Scenario, design: Design, icc: float) -> dict[str, Any]:
    discordant = rates_of_cells(cell_probabilities(scenario, design, icc))["discordant"]
    tasks = mcnemar_sample_size(
        scenario.net, discordant, alpha=round(1 - config.level, 12), power=config.planning_power
    )
    calls = tasks * ModelledCosts.expected_agent_calls(scenario, design, config.shape)
    return {"discordant": discordant, "tasks": tasks, "agent_calls": calls}


def _planning(config: BenchmarkConfig, scenario: Scenario) -> dict[str, Any]:
    """Connor's tasks for the fixed pilot (at ``level``) to reach the planning power, per design, with modelled calls.

    Same decision procedure and power, so the calls ratio is the cost of the full design's rerun noise plus its
    second full run; ``calls_full_over_fork_by_icc`` shows how it depends on the rerun correlation.
    """
    if scenario.truth == 0:
        return {"reason": "null effect: no sample size detects a zero effect"}
    plan: dict[str, Any] = {"power": config.planning_power}
    for design in DESIGNS:
        plan[design] = _planned(config, scenario, design, config.icc)
    plan["calls_full_over_fork"] = plan["full"]["agent_calls"] / plan["fork"]["agent_calls"]
    fork = plan["fork"]["agent_calls"]  # the fork design does not depend on icc
    plan["calls_full_over_fork_by_icc"] = {
        str(icc): _planned(config, scenario, "full", icc)["agent_calls"] / fork for icc in ICC_SWEEP
    }
    return plan


def _pilot_points(config: BenchmarkConfig, cells: IntArray) -> list[dict[str, Any]]:
    """One fork-design pilot of each curve size (nested prefixes of one replication): p, p_star and 95% intervals."""
    points = []
    for n in sorted(config.curve_sizes):
        counts = PairedCounts(*(int((cells[:n] == k).sum()) for k in range(4)))
        report = analyze(counts, level=config.level, seed=config.seed)
        points.append(
            {
                "n": n,
                "counts": list(counts.as_tuple()),
                "p": report.p.value,
                "p_star": report.p_star.value,
                "p_interval": [report.posterior.p.low, report.posterior.p.high],
                "p_star_interval": [report.posterior.p_star.low, report.posterior.p_star.high],
                "net_interval": [report.net_interval.low, report.net_interval.high],
                "verdict": report.verdict.value,
            }
        )
    return points


def run_scenario(config: BenchmarkConfig, scenario_index: int, cost: CostFunction) -> ScenarioResult:
    scenario = config.scenarios[scenario_index]
    truth = scenario.truth
    methods: list[MethodResult] = []
    curve: dict[str, dict[str, dict[str, list[float]]]] = {}
    first_fork_cells: IntArray | None = None
    for design in DESIGNS:
        run, first_cells = _simulate_design(config, scenario_index, design, cost)
        if design == "fork":
            first_fork_cells = first_cells
        n = config.pilot_tasks
        counts = _cat(run.counts[n])
        agent, critic = _cat(run.agent_at[n]).astype(float), _cat(run.critic_at[n]).astype(float)
        tasks = np.full(len(counts), n, dtype=np.int64)
        for name, verdicts in (
            (PAPER, paper_rule(counts)),
            (PILOT, pilot_verdicts(counts, config.level, full_report=True)),
        ):
            methods.append(MethodResult(name, design, verdicts, tasks, agent, critic, f"{n} tasks"))
        for alpha, seq in run.seq.items():
            methods.append(
                MethodResult(
                    SEQUENTIAL if alpha == config.alpha else SEQUENTIAL_SPLIT,
                    design,
                    _cat([s[0] for s in seq]),
                    _cat([s[1] for s in seq]),
                    _cat([s[2] for s in seq]).astype(float),
                    _cat([s[3] for s in seq]).astype(float),
                    f"a={alpha:g}, cap {config.task_cap}",
                )
            )
        for name, rule in (
            (PAPER, paper_rule),
            (PILOT, lambda c: pilot_verdicts(c, config.level, full_report=False)),
        ):
            rows: dict[str, list[float]] = {"n": [], "wrong": [], "correct": [], "inconclusive": []}
            for size in sorted(config.curve_sizes):
                verdicts = rule(_cat(run.counts[size]))
                rows["n"].append(size)
                rows["wrong"].append(float(wrong(verdicts, truth).mean()))
                rows["correct"].append(float(correct(verdicts, truth).mean()))
                rows["inconclusive"].append(float((verdicts == INCONCLUSIVE).mean()))
            curve.setdefault(name, {})[design] = rows
    summaries = [m.summary(truth) for m in methods]
    for summary in summaries:
        if summary["method"] == PILOT:
            cells = cell_probabilities(scenario, summary["design"], config.icc)
            summary.update(exact_pilot_rates(cells, config.pilot_tasks, config.level, truth))
    seq_fork, seq_full = _find(summaries, SEQUENTIAL, "fork"), _find(summaries, SEQUENTIAL, "full")
    ratios: dict[str, Any] = {
        "calls_full_over_fork": {
            name: _find(summaries, name, "full")["agent_calls_mean"]
            / _find(summaries, name, "fork")["agent_calls_mean"]
            for name in (PAPER, PILOT, SEQUENTIAL)
        }
    }
    if truth == 0:
        ratios["oracle"] = {"reason": "null effect: the oracle SPRT has no alternative to test (q = q0)"}
    else:
        seq_split = _find(summaries, SEQUENTIAL_SPLIT, "fork")
        variants = (
            ("beta 0.20", config.alpha, config.oracle_beta),
            ("matched", config.alpha, _matched_beta(seq_fork)),
            ("matched a/2", config.alpha / 2, _matched_beta(seq_split)),
        )
        oracles = {}
        for offset, (label, alpha, beta) in enumerate(variants):
            result, wald = _oracle(config, scenario, alpha, beta, seed=config.seed * 100 + 10 * scenario_index + offset)
            summary = result.summary(truth)
            summary["wald_expected_tasks"] = wald
            summary["alpha"], summary["beta"] = alpha, beta
            summaries.append(summary)
            oracles[label] = summary
        ratios["oracle"] = {
            "matched_beta": oracles["matched"]["beta"],
            "matched_beta_split": oracles["matched a/2"]["beta"],
            "seq_fork_over_oracle": seq_fork["tasks_mean"] / oracles["matched"]["tasks_mean"],
            "seq_split_fork_over_oracle": seq_split["tasks_mean"] / oracles["matched a/2"]["tasks_mean"],
            "seq_full_over_oracle": seq_full["tasks_mean"] / oracles["matched"]["tasks_mean"],
            "seq_fork_over_oracle_beta_0_2": seq_fork["tasks_mean"] / oracles["beta 0.20"]["tasks_mean"],
        }
    assert first_fork_cells is not None
    return ScenarioResult(
        scenario=scenario,
        truth=_truth(config, scenario),
        methods=summaries,
        ratios=ratios,
        planning=_planning(config, scenario),
        curve=curve,
        pilots=_pilot_points(config, first_fork_cells),
    )


def run_benchmark(config: BenchmarkConfig, cost: CostFunction | None = None) -> BenchmarkResult:
    """Run every scenario of ``config``; ``cost`` maps simulated tasks to calls (default: :class:`ModelledCosts`)."""
    started = time.perf_counter()
    cost = cost or ModelledCosts()
    results = [run_scenario(config, i, cost) for i in range(len(config.scenarios))]
    return BenchmarkResult(config, results, time.perf_counter() - started)


# ---- output --------------------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}"


def format_scenario(result: ScenarioResult, config: BenchmarkConfig) -> str:
    t = result.truth
    fork, full = t["designs"]["fork"], t["designs"]["full"]
    lines = [
        f"== {result.scenario.name}: {result.scenario.description}",
        f"   truth: p={t['p']:.3f} r={t['r']:.3f} d={t['d']:.3f} p_star={t['p_star']:.3f} net={t['net']:+.4f}  "
        f"critic tpr={t['tpr']:.2f} fpr={t['fpr']:.2f} (binormal AUROC {t['auroc_binormal']:.2f})",
        f"   discordant rate: fork {fork['discordant']:.3f}, full {full['discordant']:.3f} "
        f"(full design r={full['r']:.3f} d={full['d']:.3f} p_star={full['p_star']:.3f}: rerun noise, icc={config.icc})",
        "",
        f"   {'method':<13} {'design':<6} {'note':<20} {'wrong%':>6} {'≤95%':>5} {'right%':>6} {'incon%':>6} "
        f"{'deploy%':>7} {'reject%':>7} {'tasks':>7} {'median':>6} {'p90':>6} {'calls*':>8} {'critic*':>8}",
    ]
    for m in result.methods:
        lines.append(
            f"   {m['method']:<13} {m['design']:<6} {m['note']:<20} {_pct(m['wrong_rate']):>6} "
            f"{_pct(m['wrong_rate_upper95']):>5} {_pct(m['correct_rate']):>6} {_pct(m['inconclusive_rate']):>6} "
            f"{_pct(m['deploy_rate']):>7} {_pct(m['reject_rate']):>7} {m['tasks_mean']:7.1f} {m['tasks_median']:6.0f} "
            f"{m['tasks_p90']:6.0f} {m['agent_calls_mean']:8.0f} {m['critic_calls_mean']:8.0f}"
        )
    lines.append("")
    exact = [m for m in result.methods if "exact_wrong_rate" in m]
    lines.append(
        f"   fixed pilot, exact over all tables of {config.pilot_tasks} tasks: "
        + "; ".join(
            f"{m['design']} wrong {100 * m['exact_wrong_rate']:.1f}%, right {100 * m['exact_correct_rate']:.1f}%, "
            f"incon {100 * m['exact_inconclusive_rate']:.1f}%"
            for m in exact
        )
    )
    calls = result.ratios["calls_full_over_fork"]
    lines.append("   agent calls full/fork*: " + ", ".join(f"{name} {value:.2f}x" for name, value in calls.items()))
    plan = result.planning
    if "reason" in plan:
        lines.append(f"   planning: {plan['reason']}")
    else:
        lines.append(
            f"   planning (Connor, 95%, power {plan['power']:.0%}): fork {plan['fork']['tasks']} tasks "
            f"/ {plan['fork']['agent_calls']:.0f} calls*, full {plan['full']['tasks']} tasks / "
            f"{plan['full']['agent_calls']:.0f} calls*: full/fork {plan['calls_full_over_fork']:.2f}x"
        )
        lines.append(
            "     same, full/fork by rerun icc: "
            + ", ".join(f"{icc} {ratio:.2f}x" for icc, ratio in plan["calls_full_over_fork_by_icc"].items())
        )
    oracle = result.ratios["oracle"]
    if "reason" in oracle:
        lines.append(f"   E[N]/E[N_oracle]: n/a ({oracle['reason']})")
    else:
        lines.append(
            "   E[N]/E[N_oracle] at matched error rates (oracle rows above): sequential fork "
            f"{oracle['seq_fork_over_oracle']:.2f}, a/2 {oracle['seq_split_fork_over_oracle']:.2f}, "
            f"sequential full {oracle['seq_full_over_oracle']:.2f} "
            f"(fork vs oracle at beta 0.2: {oracle['seq_fork_over_oracle_beta_0_2']:.2f})"
        )
    return "\n".join(lines)


_WRONG_CHECKED = (
    (PILOT, "fork"),
    (PILOT, "full"),
    (SEQUENTIAL, "fork"),
    (SEQUENTIAL_SPLIT, "fork"),
    (SEQUENTIAL, "full"),
)


def _wrong_status(summary: dict[str, Any], alpha: float) -> tuple[float, str]:
    """The wrong-decision rate checked against alpha: exact for fixed pilots, simulated (with noise) otherwise.

    ``ok``: at most alpha; ``~``: the estimate is above alpha but its 95% lower bound is not (sampling noise cannot
    be ruled out); ``MISS``: above alpha beyond sampling noise.
    """
    if "exact_wrong_rate" in summary:
        rate = summary["exact_wrong_rate"]
        return rate, "ok" if rate <= alpha else "MISS"
    rate = summary["wrong_rate"]
    if rate <= alpha:
        return rate, "ok"
    return rate, "~" if summary["wrong_rate_lower95"] <= alpha else "MISS"


def targets(result: BenchmarkResult) -> list[dict[str, Any]]:
    """The issue's targets per scenario: wrong <= alpha (our methods), calls full/fork >= 2, E[N]/E[N_oracle] <= 2.

    ``None`` where a check does not apply (no oracle and no sample size for a null effect).
    """
    alpha = result.config.alpha
    rows = []
    for s in result.scenarios:
        checked = {f"{m} {d}": _wrong_status(s.method(m, d), alpha) for m, d in _WRONG_CHECKED}
        seq_calls = s.ratios["calls_full_over_fork"][SEQUENTIAL]
        plan_calls = s.planning.get("calls_full_over_fork")
        oracle = s.ratios["oracle"]
        n_ratio = oracle.get("seq_fork_over_oracle")
        rows.append(
            {
                "scenario": s.scenario.name,
                "wrong_rates": {k: v[0] for k, v in checked.items()},
                "wrong_status": {k: v[1] for k, v in checked.items()},
                "calls_full_over_fork_sequential": seq_calls,
                "calls_full_over_fork_planned": plan_calls,
                "calls_ok": seq_calls >= 2.0 and (plan_calls is None or plan_calls >= 2.0),
                "n_over_oracle": n_ratio,
                "n_over_oracle_split": oracle.get("seq_split_fork_over_oracle"),
                "oracle_ok": None if n_ratio is None else n_ratio <= 2.0,
            }
        )
    return rows


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("ok" if ok else "MISS")


def format_targets(result: BenchmarkResult) -> str:
    alpha = result.config.alpha
    lines = [
        f"targets: wrong% <= {100 * alpha:g} for pilot fork | pilot full (exact) | seq fork | seq a/2 fork | seq full "
        "(simulated; ~ = above alpha within sampling noise, ! = beyond it)",
        "         agent calls full/fork* >= 2 (sequential | planned);  E[N]/E[N_oracle] <= 2 (seq fork | seq a/2)",
    ]
    flag = {"ok": " ", "~": "~", "MISS": "!"}
    for row in targets(result):
        status = row["wrong_status"]
        wrongs = " ".join(f"{100 * v:4.1f}{flag[status[k]]}" for k, v in row["wrong_rates"].items())
        overall = "MISS" if "MISS" in status.values() else ("~" if "~" in status.values() else "ok")
        plan = row["calls_full_over_fork_planned"]
        plan_text = "  n/a" if plan is None else f"{plan:5.2f}"
        n_ratio, n_split = row["n_over_oracle"], row["n_over_oracle_split"]
        n_text = "  n/a   n/a" if n_ratio is None else f"{n_ratio:5.2f} {n_split:5.2f}"
        lines.append(
            f"  {row['scenario']:<20} {wrongs}  {overall:<4}  "
            f"{row['calls_full_over_fork_sequential']:5.2f} {plan_text}  {_mark(row['calls_ok']):<4}  "
            f"{n_text}  {_mark(row['oracle_ok'])}"
        )
    return "\n".join(lines)


def format_report(result: BenchmarkResult) -> str:
    c = result.config
    head = [
        f"decision quality: {c.replications} replications per method, alpha {c.alpha} per e-process, "
        f"fixed pilots at {c.level:.0%}, icc {c.icc}, {c.shape.steps_per_run} steps per run, seed {c.seed}",
        f"{DECISION_LABEL}: verdicts, rates, tasks.  {COST_LABEL} (*): agent and critic calls (cost model).",
        "wrong% = claims the wrong sign; ≤95% = one-sided 95% Clopper-Pearson upper bound; right% = true sign "
        "(null: no claim); reject% = harms, or the paper's 'do not deploy'",
        "",
    ]
    body = [format_scenario(s, c) for s in result.scenarios]
    footer = f"\n\n{format_targets(result)}\n\n({result.seconds:.1f} s)"
    return "\n".join(head) + "\n\n".join(body) + footer


# ---- plots ---------------------------------------------------------------------------------------------------

_STYLE = {
    (PAPER, "full"): ("tab:red", "paper rule, full"),
    (PAPER, "fork"): ("tab:orange", "paper rule, fork"),
    (PILOT, "full"): ("tab:purple", "fixed pilot 95%, full"),
    (PILOT, "fork"): ("tab:blue", "fixed pilot 95%, fork"),
}


def plot_error_curves(result: BenchmarkResult, path: Path) -> None:
    """Wrong-decision rate (top) and right-decision rate (bottom) against pilot size, one column per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.scenarios)
    fig, axes = plt.subplots(2, k, figsize=(3.0 * k, 5.6), sharex=True, squeeze=False)
    for col, s in enumerate(result.scenarios):
        top, bottom = axes[0][col], axes[1][col]
        for (method, design), (colour, label) in _STYLE.items():
            rows = s.curve[method][design]
            top.plot(rows["n"], rows["wrong"], "o-", color=colour, ms=3, lw=1.2, label=label)
            bottom.plot(rows["n"], rows["correct"], "o-", color=colour, ms=3, lw=1.2, label=label)
        seq = s.method(SEQUENTIAL, "fork")
        top.plot(seq["tasks_mean"], seq["wrong_rate"], "k*", ms=9, label="sequential fork (mean tasks)")
        bottom.plot(seq["tasks_mean"], seq["correct_rate"], "k*", ms=9)
        top.axhline(result.config.alpha, color="grey", ls="--", lw=0.8)
        top.set_title(f"{s.scenario.name}\nnet {s.scenario.net:+.3f}", fontsize=9)
        top.set_ylim(-0.02, 0.62)
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_xscale("log")
        bottom.set_xlabel("tasks in the pilot", fontsize=8)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("wrong decision rate", fontsize=8)
    axes[1][0].set_ylabel("right decision rate", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(
        f"Decision error vs tasks ({result.config.replications} seeded pilots per point; dashed: alpha)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_p_vs_pstar(result: BenchmarkResult, path: Path) -> None:
    """p and p_star with 95% credible intervals from one fork-design pilot of each size, per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.scenarios)
    fig, axes = plt.subplots(1, k, figsize=(3.0 * k, 3.4), sharey=True, squeeze=False)
    for col, s in enumerate(result.scenarios):
        ax = axes[0][col]
        ns = np.asarray([pt["n"] for pt in s.pilots], dtype=float)
        for key, colour, shift, label in (("p", "tab:blue", 0.94, "p"), ("p_star", "tab:red", 1.06, "p_star")):
            lows = np.asarray([pt[f"{key}_interval"][0] for pt in s.pilots])
            highs = np.asarray([pt[f"{key}_interval"][1] for pt in s.pilots])
            mids = np.asarray([np.nan if pt[key] is None else pt[key] for pt in s.pilots], dtype=float)
            ax.vlines(ns * shift, lows, highs, color=colour, lw=1.5)
            ax.plot(ns * shift, mids, "o", color=colour, ms=4, label=f"{label} (95% credible)")
        ax.axhline(s.scenario.p, color="tab:blue", ls=":", lw=1, label="true p")
        ax.axhline(s.scenario.p_star, color="tab:red", ls=":", lw=1, label="true p_star")
        for pt, n in zip(s.pilots, ns, strict=True):
            ax.annotate(pt["verdict"][:5], (n, 1.14), fontsize=6, ha="center", va="top", rotation=90)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.15)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(f"{s.scenario.name}\nnet {s.scenario.net:+.3f}", fontsize=9)
        ax.set_xlabel("tasks (one fork pilot each)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("failure rate", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("p vs p_star: intervene iff p > p_star (verdict of each 95% pilot at the top)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- command line --------------------------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    base = SMOKE if args.smoke else BenchmarkConfig()
    shape = RunShape.make(args.steps, args.min_step, args.flag_steps)
    changes: dict[str, Any] = {"icc": args.icc, "shape": shape, "seed": args.seed}
    if args.reps is not None:
        changes["replications"] = args.reps
    if args.cap is not None:
        changes["task_cap"] = args.cap
    return replace(base, **changes)


def main(argv: Sequence[str] | None = None) -> BenchmarkResult:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and fast (CI): 200 replications, cap 600")
    parser.add_argument("--reps", type=int, default=None, help="replications per method (default 2000)")
    parser.add_argument("--cap", type=int, default=None, help="task cap of the sequential design (default 2000)")
    parser.add_argument("--icc", type=float, default=0.5, help="rerun correlation of one task's outcomes (0..1)")
    parser.add_argument("--steps", type=int, default=10, help="agent steps per run (cost model)")
    parser.add_argument("--min-step", type=int, default=2, help="earliest step the critic may flag (cost model)")
    parser.add_argument(
        "--flag-steps",
        choices=("uniform", "early", "late"),
        default="uniform",
        help="distribution of the first-flag step over min-step..steps-1 (cost model)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    parser.add_argument("--plots", type=Path, default=Path(__file__).parent / "plots", help="directory for PNGs")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    result = run_benchmark(config_from_args(args))
    print(format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n")
    if not args.no_plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        plot_error_curves(result, args.plots / "decision_error_vs_tasks.png")
        plot_p_vs_pstar(result, args.plots / "p_vs_pstar.png")
    return result


if __name__ == "__main__":
    main()
