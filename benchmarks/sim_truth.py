"""Ground truth of the simulated agent (``critic_guard_langgraph.sim``): its generative process in numpy, no graph.

Why: the benchmarks and the simulator's tests check every statistic the guarded agent produces (cells, p, r, d,
net, p_star, flag rates, model calls) against the probabilities the simulator's knobs imply. Those come from a
vectorised Monte Carlo of the same process the scripted model and ``SimCritic`` run (the simulator's module
docstring): first proposals are mistakes with the task's probability, the critic's score is binormal with the
scenario's AUROC, a flagged step at or after ``min_step`` is rolled back and redrawn by the r/d rule while the budget
lasts. It lives beside its users (benchmarks and tests), not in the integration package, which ships the simulator
for the demo only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from critic_guard_langgraph.sim import SimScenario

__all__ = ["Design", "SimTruth", "sim_truth", "task_errors"]

Design = Literal["fork", "full"]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
Ints = NDArray[np.int64]


def task_errors(scenario: SimScenario, rng: np.random.Generator, n: int) -> Floats:
    """``n`` tasks' per-step mistake probabilities, drawn as ``SimScenario.task_error`` draws them."""
    if scenario.task_spread == 0.0 or scenario.step_error in (0.0, 1.0):
        return np.full(n, scenario.step_error)
    return rng.beta(*scenario.task_error_beta, size=n)


@dataclass(frozen=True, slots=True)
class SimTruth:
    """Ground truth of a scenario under one design, by Monte Carlo of the generative process (no graph).

    ``cells``: probabilities of (n00, n01, n10, n11), control outcome first. ``flag_rate``: share of tasks whose
    run is flagged (the treatment run's, in ``full``), ``mean_flag_step`` the mean step of the first flag.
    ``extra_model_calls``: mean model calls per task beyond the control run's ``steps`` (see :func:`sim_truth`).
    ``n``: simulated tasks. ``tpr`` / ``fpr``: the rates at which a control run that fails / succeeds would be
    flagged (its first flag, ignoring the intervention). ``icc``: the correlation of two unguarded runs' outcomes
    on one task (from ``task_spread``; 0 when all tasks are alike).
    """

    scenario: SimScenario
    design: Design
    n: int
    cells: tuple[float, float, float, float]
    flag_rate: float
    mean_flag_step: float
    extra_model_calls: float
    tpr: float
    fpr: float
    icc: float

    @property
    def p(self) -> float:
        return self.cells[0] + self.cells[1]

    @property
    def r(self) -> float:
        return self.cells[1] / self.p

    @property
    def d(self) -> float:
        return self.cells[2] / (self.cells[2] + self.cells[3])

    @property
    def net(self) -> float:
        return self.cells[1] - self.cells[2]

    @property
    def p_star(self) -> float:
        return self.d / (self.r + self.d)


@dataclass(slots=True)
class _Arm:
    """One simulated run per task (vectorised): its outcome, first flag and the model calls it made."""

    ok: Bools
    first_flag: NDArray[np.int64]
    calls: NDArray[np.int64]


def _propose(rng: np.random.Generator, sc: SimScenario, q: Floats, prev: Bools | None) -> tuple[Bools, Bools]:
    """Mistake and would-flag of one proposal per task (mistake probabilities ``q``): first proposals (``prev``
    None) or retries after ``prev``."""
    n = q.shape[0]
    u = rng.random(n)
    mistake = u < q if prev is None else np.where(prev, u >= sc.recover, u < sc.disrupt)
    score = sc.separation * mistake + rng.standard_normal(n)
    return mistake, score >= sc.flag_threshold


def _run(rng: np.random.Generator, sc: SimScenario, q: Floats, *, intervene: bool) -> _Arm:
    """Simulate one run per task (mistake probabilities ``q``); ``intervene``: roll back flagged steps as the
    treatment arm does."""
    n = q.shape[0]
    ok = np.ones(n, dtype=bool)
    first_flag = np.full(n, -1, dtype=np.int64)
    calls = np.zeros(n, dtype=np.int64)
    used = np.zeros(n, dtype=np.int64)
    for step in range(sc.steps):
        mistake, flag = _propose(rng, sc, q, None)
        calls += 1
        acts = flag & (step >= sc.min_step)
        first_flag = np.where(acts & (first_flag < 0), step, first_flag)
        if intervene:
            mistake = _rollbacks(rng, sc, q, mistake, acts & (used < sc.max_interventions), used, calls)
        ok &= ~mistake
    return _Arm(ok, first_flag, calls)


def _shared_draws(rng_seed: int, sc: SimScenario, q: Floats) -> tuple[_Arm, _Arm]:
    """Control and treatment of the fork design: identical draws up to the first flag, independent after.

    Two generators from one seed replay the same first-proposal stream, so the treatment run sees the control's
    proposals exactly until it first intervenes; from then on its history differs, so it draws its own.
    """
    control = _run(np.random.default_rng(rng_seed), sc, q, intervene=False)
    treatment = _fork_run(np.random.default_rng(rng_seed), np.random.default_rng(rng_seed + 1), sc, q, control)
    return control, treatment


def _fork_run(same: np.random.Generator, own: np.random.Generator, sc: SimScenario, q: Floats, control: _Arm) -> _Arm:
    """The treatment branch: replays the control's first proposals (``same``) until its first flag, then ``own``."""
    n = control.ok.shape[0]
    ok = np.ones(n, dtype=bool)
    calls = np.zeros(n, dtype=np.int64)
    used = np.zeros(n, dtype=np.int64)
    forked = np.zeros(n, dtype=bool)
    for step in range(sc.steps):
        shared_mistake, shared_flag = _propose(same, sc, q, None)
        own_mistake, own_flag = _propose(own, sc, q, None)
        mistake = np.where(forked, own_mistake, shared_mistake)
        flag = np.where(forked, own_flag, shared_flag)
        calls += forked
        acts = flag & (step >= sc.min_step) & (used < sc.max_interventions)
        forked |= acts
        mistake = _rollbacks(own, sc, q, mistake, acts, used, calls)
        ok &= ~mistake
    return _Arm(ok, control.first_flag, calls)


def _rollbacks(
    rng: np.random.Generator, sc: SimScenario, q: Floats, mistake: Bools, acts: Bools, used: Ints, calls: Ints
) -> Bools:
    """Roll back the proposals where ``acts`` and re-ask, while the retry is flagged and the budget lasts; returns
    the final proposals' mistakes. ``used`` (interventions) and ``calls`` (model calls) are counted in place."""
    while acts.any():
        used += acts
        calls += acts
        retry_mistake, retry_flag = _propose(rng, sc, q, mistake)
        mistake = np.where(acts, retry_mistake, mistake)
        acts = acts & retry_flag & (used < sc.max_interventions)
    return mistake


def _cells(control: Bools, treatment: Bools) -> tuple[float, float, float, float]:
    index = 2 * control.astype(np.int64) + treatment.astype(np.int64)
    counts = np.bincount(index, minlength=4) / index.shape[0]
    return (float(counts[0]), float(counts[1]), float(counts[2]), float(counts[3]))


def _outcome_icc(q: Floats, steps: int) -> float:
    """Correlation of the outcomes of two unguarded runs of one task: ``Var f / (p (1 - p))`` with ``f`` the
    task's failure probability ``1 - (1 - q) ** steps`` and ``p = E f`` (0 when all tasks are alike)."""
    f = 1.0 - (1.0 - q) ** steps
    p = float(f.mean())
    return float(f.var() / (p * (1.0 - p))) if 0.0 < p < 1.0 and np.ptp(q) > 0 else 0.0


def _rate(events: Bools) -> float:
    return float(events.mean()) if events.size else float("nan")


@lru_cache(maxsize=64)
def sim_truth(scenario: SimScenario, design: Design = "fork", n: int = 1_000_000, seed: int = 12345) -> SimTruth:
    """Ground truth of ``scenario`` by Monte Carlo of ``n`` tasks (vectorised, no graph; a pure, cached function).

    ``fork``: the control run and a treatment branch sharing it up to the first flag. ``full``: two independent
    runs, a control run and a treatment run. ``extra_model_calls``: mean model calls per task beyond the served
    control run (fork: the treatment branch's own calls after the fork; full: the whole treatment run).
    The standard error of each cell is at most ``0.5 / sqrt(n)`` (5e-4 at the default n).
    """
    q = task_errors(scenario, np.random.default_rng([seed, 7]), n)  # the tasks: both arms of a task share q
    if design == "fork":
        control, treatment = _shared_draws(seed, scenario, q)
        flagged = control.first_flag >= 0
        flag_steps = control.first_flag[flagged]
    elif design == "full":
        control = _run(np.random.default_rng(seed), scenario, q, intervene=False)
        treatment = _run(np.random.default_rng(seed + 1), scenario, q, intervene=True)
        flagged = treatment.first_flag >= 0
        flag_steps = treatment.first_flag[flagged]
    else:
        raise ValueError(f"design must be 'fork' or 'full', got {design!r}")
    return SimTruth(
        scenario=scenario,
        design=design,
        n=n,
        cells=_cells(control.ok, treatment.ok),
        flag_rate=float(flagged.mean()),
        mean_flag_step=float(flag_steps.mean()) if flag_steps.size else float("nan"),
        extra_model_calls=float(treatment.calls.mean()),
        tpr=_rate(control.first_flag[~control.ok] >= 0),
        fpr=_rate(control.first_flag[control.ok] >= 0),
        icc=_outcome_icc(q, scenario.steps),
    )
