"""A pair-level world with known ground truth, for the decision-quality benchmark (``benchmarks/decision.py``).

**One task, one run.** A task has a difficulty: the probability ``f`` that a run of the agent fails on it, drawn from
a Beta distribution with mean ``p`` and intra-class correlation ``icc`` (``Var f = icc * p * (1 - p)``). ``icc`` is
the correlation of the outcomes of two reruns of the same task: 0 makes every task alike (reruns independent), 1
makes every task deterministic (reruns identical). Whether a run fails is one draw given ``f``.

**The critic and the intervention.** The critic flags a run (its first flag) with probability ``tpr`` if the run is
one that would fail and ``fpr`` if it would succeed. A flagged run that would fail is recovered with probability
``r_flag``; a flagged run that would succeed is disrupted with probability ``d_flag``. An unflagged run is not
touched. ``r_flag`` and ``d_flag`` are the rates at which forked branches disagree, so any sampling noise after the
fork is inside them; the model has no separate knob for it.

**Mapping to the paper's quantities** (docs/statistics.md, "Point estimates": ``p``, ``r``, ``d`` over *all* runs,
flagged or not)::

    p = E[f]             r = tpr * r_flag             d = fpr * d_flag
    net = p * r - (1 - p) * d                          p_star = d / (r + d)

**Two designs** (docs/pilot-design.md, "Why fork at the first flag"), whose cell probabilities are derived exactly in
:func:`cell_probabilities`:

* ``fork``: one run per task. Control and treatment share the run up to the first flag, so an unflagged task is a
  concordant pair by construction, and a flagged one differs only by the intervention. Cells:
  ``n01 = p r``, ``n00 = p (1 - r)``, ``n10 = (1 - p) d``, ``n11 = (1 - p)(1 - d)``. The task's difficulty plays no
  part (each cell is linear in ``f``).
* ``full``: two independent full runs per task, as in the paper's pilot. The control run and the treatment run are
  separate draws given ``f``; the treatment run is flagged and intervened on by the same rule. Then with
  ``g(f) = P(treatment run succeeds | f) = (1 - d) - (1 - r - d) f`` the cells are expectations over ``f``:
  ``n01 = E[f g(f)] = (1 - d) p - (1 - r - d) E[f^2]`` with ``E[f^2] = p^2 + icc p (1 - p)``, and the others by
  subtraction from the margins. The net effect is the same as with forks (``E[g] - (1 - p)``), but unless
  ``icc = 1`` the two runs of a task also disagree by chance: every such disagreement is a discordant pair that
  carries no information about the intervention and only adds variance. That is the whole reason forks beat full
  runs, besides being cheaper.

**Costs are modelled, not measured.** :class:`ModelledCosts` counts agent model calls from a fixed run length and
the step of the first flag; a later session replaces it with calls measured on the real guarded agent. Anything
with the :data:`CostFunction` signature works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

Design = Literal["fork", "full"]
DESIGNS: tuple[Design, ...] = ("fork", "full")
CELLS = ("n00", "n01", "n10", "n11")

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


def _check_unit(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def binormal_auroc(tpr: float, fpr: float) -> float:
    """AUROC of the equal-variance binormal critic that has this operating point: ``Phi((z(tpr) - z(fpr))/sqrt 2)``.

    Lets a scenario given by (tpr, fpr) be read as a critic quality; 0.5 is a coin, 1 a perfect critic.
    """
    tpr, fpr = _check_unit("tpr", tpr), _check_unit("fpr", fpr)
    if tpr in (0.0, 1.0) or fpr in (0.0, 1.0):
        raise ValueError("tpr and fpr must be strictly between 0 and 1 for a binormal critic")
    separation = float(stats.norm.ppf(tpr) - stats.norm.ppf(fpr))
    return float(stats.norm.cdf(separation / math.sqrt(2.0)))


@dataclass(frozen=True, slots=True)
class Scenario:
    """A world with ground truth: baseline failure rate, critic operating point and per-flag effects."""

    name: str
    description: str
    p: float
    tpr: float
    fpr: float
    r_flag: float
    d_flag: float

    def __post_init__(self) -> None:
        for field in ("p", "tpr", "fpr", "r_flag", "d_flag"):
            _check_unit(field, getattr(self, field))
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"p must be strictly between 0 and 1, got {self.p}")
        if self.r + self.d == 0.0:
            raise ValueError("r = d = 0: the intervention never changes an outcome")

    @property
    def r(self) -> float:
        """The paper's recovery rate: the share of failing runs that the intervention rescues."""
        return self.tpr * self.r_flag

    @property
    def d(self) -> float:
        """The paper's disruption rate: the share of succeeding runs that the intervention breaks."""
        return self.fpr * self.d_flag

    @property
    def net(self) -> float:
        return self.p * self.r - (1.0 - self.p) * self.d

    @property
    def p_star(self) -> float:
        return self.d / (self.r + self.d)

    @property
    def truth(self) -> int:
        """The sign of the true net effect: +1 helps, -1 harms, 0 null (exact zero within float noise)."""
        return 0 if abs(self.net) < 1e-12 else (1 if self.net > 0 else -1)


@dataclass(frozen=True, slots=True)
class RunShape:
    """How long a run is and at which step the critic first flags it (for costs; it does not change outcomes).

    ``flag_step_pmf[s]`` is the probability that a flagged run's first flag is at step ``s`` (steps 0-based,
    ``len == steps_per_run``). The first-flag step is drawn independently of whether the run would fail.
    """

    steps_per_run: int
    flag_step_pmf: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.flag_step_pmf) != self.steps_per_run:
            raise ValueError(f"flag_step_pmf needs one probability per step ({self.steps_per_run})")
        pmf = np.asarray(self.flag_step_pmf)
        if np.any(pmf < 0) or not math.isclose(float(pmf.sum()), 1.0, abs_tol=1e-9):
            raise ValueError("flag_step_pmf must be non-negative and sum to 1")

    @classmethod
    def make(cls, steps_per_run: int = 10, min_step: int = 2, shape: str = "uniform") -> RunShape:
        """First flags on steps ``min_step .. steps_per_run - 1``: ``uniform``, ``early`` (weights 0.7^k), ``late``."""
        if steps_per_run < 2 or not 0 <= min_step < steps_per_run:
            raise ValueError(
                f"need steps_per_run >= 2 and 0 <= min_step < steps_per_run, got {steps_per_run}, {min_step}"
            )
        k = np.arange(steps_per_run - min_step, dtype=float)
        weights = {"uniform": np.ones_like(k), "early": 0.7**k, "late": 0.7 ** k[::-1]}
        if shape not in weights:
            raise ValueError(f"shape must be one of {sorted(weights)}, got {shape!r}")
        pmf = np.zeros(steps_per_run)
        pmf[min_step:] = weights[shape] / weights[shape].sum()
        return cls(steps_per_run, tuple(float(v) for v in pmf))

    @property
    def mean_flag_step(self) -> float:
        return float(np.dot(np.arange(self.steps_per_run), self.flag_step_pmf))


def _difficulty_moments(p: float, icc: float) -> tuple[float, float]:
    """E[f] and E[f^2] of the task difficulty."""
    return p, p * p + icc * p * (1.0 - p)


def cell_probabilities(scenario: Scenario, design: Design, icc: float) -> NDArray[np.float64]:
    """Exact probabilities of the cells (n00, n01, n10, n11) of one task's pair under ``design`` (module docstring)."""
    icc = _check_unit("icc", icc)
    p, r, d = scenario.p, scenario.r, scenario.d
    if design == "fork":
        cells = [p * (1.0 - r), p * r, (1.0 - p) * d, (1.0 - p) * (1.0 - d)]
    elif design == "full":
        _, ef2 = _difficulty_moments(p, icc)
        slope = 1.0 - r - d
        p01 = (1.0 - d) * p - slope * ef2  # E[f g(f)]
        p11 = (1.0 - d) - slope * p - p01  # E[(1 - f) g(f)] = E[g] - E[f g]
        cells = [p - p01, p01, (1.0 - p) - p11, p11]
    else:
        raise ValueError(f"design must be 'fork' or 'full', got {design!r}")
    return np.asarray(cells, dtype=float)


def rates_of_cells(cells: Sequence[float] | NDArray[np.float64]) -> dict[str, float]:
    """The paper's p, r, d, p_star, net and the discordant rate that a design's cell probabilities imply."""
    p00, p01, p10, p11 = (float(c) for c in cells)
    p, r, d = p00 + p01, p01 / (p00 + p01), p10 / (p10 + p11)
    return {"p": p, "r": r, "d": d, "p_star": d / (r + d), "net": p01 - p10, "discordant": p01 + p10}


@dataclass(frozen=True, slots=True)
class TaskOutcomes:
    """Simulated tasks, arrays of one shape (e.g. ``(replications, tasks)``).

    ``flagged``/``flag_step`` describe the run the intervention acts on: the shared run of a fork, or the treatment
    run of the full design (``flag_step`` is -1 where not flagged).
    """

    design: Design
    control: BoolArray
    treatment: BoolArray
    flagged: BoolArray
    flag_step: IntArray
    shape: RunShape

    @property
    def cell_index(self) -> IntArray:
        """0..3 for n00, n01, n10, n11 (control outcome first)."""
        return (2 * self.control.astype(np.int64) + self.treatment.astype(np.int64)).astype(np.int64)


def _difficulties(rng: np.random.Generator, p: float, icc: float, size: tuple[int, ...]) -> NDArray[np.float64]:
    if icc == 0.0:
        return np.full(size, p)
    if icc == 1.0:
        return (rng.random(size) < p).astype(float)
    concentration = (1.0 - icc) / icc
    return rng.beta(p * concentration, (1.0 - p) * concentration, size)


def simulate_tasks(
    scenario: Scenario,
    design: Design,
    icc: float,
    size: tuple[int, ...],
    rng: np.random.Generator,
    shape: RunShape | None = None,
) -> TaskOutcomes:
    """Simulate tasks run by run: difficulty, the control run, the critic's flag, the intervention's effect."""
    icc = _check_unit("icc", icc)
    shape = shape or RunShape.make()
    fail_prob = _difficulties(rng, scenario.p, icc, size)
    control_fails = rng.random(size) < fail_prob
    if design == "fork":
        acted_fails = control_fails  # the treatment branch shares the run up to the first flag
    elif design == "full":
        acted_fails = rng.random(size) < fail_prob  # its own run: an independent draw given the task
    else:
        raise ValueError(f"design must be 'fork' or 'full', got {design!r}")
    flagged = rng.random(size) < np.where(acted_fails, scenario.tpr, scenario.fpr)
    flips = rng.random(size) < np.where(acted_fails, scenario.r_flag, scenario.d_flag)
    treatment_succeeds = np.where(flagged & flips, acted_fails, ~acted_fails)
    steps = rng.choice(shape.steps_per_run, size=size, p=shape.flag_step_pmf)
    return TaskOutcomes(
        design=design,
        control=~control_fails,
        treatment=treatment_succeeds,
        flagged=flagged,
        flag_step=np.where(flagged, steps, -1).astype(np.int64),
        shape=shape,
    )


@dataclass(frozen=True, slots=True)
class CallCounts:
    """Per-task calls, arrays of the tasks' shape: agent model calls and critic calls."""

    agent: IntArray
    critic: IntArray


CostFunction = Callable[[TaskOutcomes], CallCounts]
"""Maps simulated tasks to the calls they cost; replace with measured calls from the real guarded agent."""


@dataclass(frozen=True, slots=True)
class ModelledCosts:
    """Agent and critic calls per task from the run length ``L`` and the first-flag step ``s`` (a model, not data).

    Intervention is ROLLBACK: the flagged step's proposal is discarded and the model re-asked, once per flagged
    run (later flags in the same run are not modelled).

    * fork: the served run costs ``L``; a flagged task adds the treatment branch from the fork, steps ``s ..
      L - 1``: ``L - s`` calls (the discarded proposal belongs to the shared prefix).
    * full: two full runs, ``2 L``, plus the re-asked step when the treatment run is flagged.
    * critic: one call per step of the run the critic watches, plus one for the re-asked step: ``L + flagged``,
      the same in both designs (the control branch of a fork and the control run of the full design need none).
    """

    def __call__(self, tasks: TaskOutcomes) -> CallCounts:
        steps = tasks.shape.steps_per_run
        flagged = tasks.flagged.astype(np.int64)
        agent = steps + flagged * (steps - tasks.flag_step) if tasks.design == "fork" else 2 * steps + flagged
        return CallCounts(agent=agent.astype(np.int64), critic=(steps + flagged).astype(np.int64))

    @staticmethod
    def expected_agent_calls(scenario: Scenario, design: Design, shape: RunShape) -> float:
        """Mean agent calls per task under this model (for the oracle, which only reports tasks)."""
        flag_rate = scenario.p * scenario.tpr + (1.0 - scenario.p) * scenario.fpr
        steps = shape.steps_per_run
        if design == "fork":
            return steps + flag_rate * (steps - shape.mean_flag_step)
        return 2.0 * steps + flag_rate


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "hotpotqa_harm",
        "HotPotQA-like: high success (p = 0.25), disruption dominates, intervention harms",
        p=0.25,
        tpr=0.7,
        fpr=0.3,
        r_flag=0.25,
        d_flag=0.45,
    ),
    Scenario(
        "alfworld_small_help",
        "ALFWorld-like: low success (p = 0.893), r = 0.119, d = 0.5625 as in the paper's pilot, helps a little",
        p=0.893,
        tpr=0.85,
        fpr=0.75,
        r_flag=0.14,
        d_flag=0.75,
    ),
    Scenario(
        "null",
        "null effect: p = 0.5, r = d = 0.15, net = 0",
        p=0.5,
        tpr=0.6,
        fpr=0.3,
        r_flag=0.25,
        d_flag=0.5,
    ),
    Scenario(
        "clear_help",
        "clear help: good critic (p = 0.5, r = 0.40, d = 0.04)",
        p=0.5,
        tpr=0.8,
        fpr=0.2,
        r_flag=0.5,
        d_flag=0.2,
    ),
    Scenario(
        "clear_harm",
        "clear harm: weak critic, disruptive feedback (p = 0.3, r = 0.09, d = 0.20)",
        p=0.3,
        tpr=0.6,
        fpr=0.4,
        r_flag=0.15,
        d_flag=0.5,
    ),
)
