"""The physical limit of sample efficiency: Wald's SPRT on the discordant pairs, with p, r, d known.

Only discordant pairs carry evidence about the sign of the effect. A discordant pair is a recovery with
probability ``q = p*r / (p*r + (1-p)*d)``, and a task is discordant with probability ``pi = p*r + (1-p)*d``. An
oracle that knows ``q`` runs Wald's sequential probability ratio test of ``H0: q = q0`` (default 1/2, no effect)
against ``H1: q = q_true``. Among all tests with the same error rates, the SPRT has the smallest expected sample
size at both hypotheses (Wald & Wolfowitz 1948), so no method that must *learn* q can beat it on average. Benchmarks
report ``E[N_method] / E[N_oracle]``.

:meth:`OracleSPRT.expected_tasks` is Wald's approximation (it ignores the overshoot of the last step);
:meth:`OracleSPRT.simulate` is the exact, seeded simulation of the same test task by task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _check_error(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 0.5:
        raise ValueError(f"{name} must be in (0, 0.5), got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class OracleSimulation:
    """Outcome of :meth:`OracleSPRT.simulate`: per run, tasks used and whether H1 (the true q) was accepted."""

    tasks: NDArray[np.int64]
    accepted_h1: NDArray[np.bool_]
    decided: NDArray[np.bool_]

    @property
    def mean_tasks(self) -> float:
        return float(self.tasks.mean())

    @property
    def power(self) -> float:
        """Share of runs that accepted the true alternative."""
        return float(self.accepted_h1.mean())


@dataclass(frozen=True, slots=True)
class OracleSPRT:
    """Wald's SPRT of ``q = q0`` against ``q = q`` on discordant pairs, with type I error ``alpha``, II ``beta``."""

    q: float
    discordant_rate: float
    alpha: float = 0.05
    beta: float = 0.2
    q0: float = 0.5

    def __post_init__(self) -> None:
        for name in ("q", "q0"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
        if self.q == self.q0:
            raise ValueError(f"q = q0 = {self.q}: there is no effect to detect, the SPRT never ends on average")
        rate = _check_rate("discordant_rate", self.discordant_rate)
        if rate == 0.0:
            raise ValueError("discordant_rate is 0: no task ever carries evidence")
        _check_error("alpha", self.alpha)
        _check_error("beta", self.beta)

    @classmethod
    def from_rates(
        cls, p: float, r: float, d: float, alpha: float = 0.05, beta: float = 0.2, q0: float = 0.5
    ) -> OracleSPRT:
        """The oracle for a world with failure rate ``p``, recovery rate ``r`` and disruption rate ``d``."""
        p, r, d = _check_rate("p", p), _check_rate("r", r), _check_rate("d", d)
        discordant = p * r + (1.0 - p) * d
        if discordant == 0.0:
            raise ValueError("p*r + (1-p)*d = 0: no task is ever discordant")
        return cls(q=p * r / discordant, discordant_rate=discordant, alpha=alpha, beta=beta, q0=q0)

    # ---- the test --------------------------------------------------------------------------------------------
    @property
    def upper(self) -> float:
        """Accept H1 when the log-likelihood ratio reaches this: log((1 - beta)/alpha)."""
        return math.log((1.0 - self.beta) / self.alpha)

    @property
    def lower(self) -> float:
        """Accept H0 when the log-likelihood ratio falls to this: log(beta/(1 - alpha))."""
        return math.log(self.beta / (1.0 - self.alpha))

    @property
    def step_recovery(self) -> float:
        return math.log(self.q / self.q0)

    @property
    def step_disruption(self) -> float:
        return math.log((1.0 - self.q) / (1.0 - self.q0))

    def expected_discordant(self) -> float:
        """Wald's approximation of E[discordant pairs] when the true q holds."""
        drift = self.q * self.step_recovery + (1.0 - self.q) * self.step_disruption  # KL(q || q0) > 0
        return ((1.0 - self.beta) * self.upper + self.beta * self.lower) / drift

    def expected_tasks(self) -> float:
        """Wald's approximation of E[tasks]: each task is discordant with probability ``discordant_rate``."""
        return self.expected_discordant() / self.discordant_rate

    def simulate(
        self, runs: int = 2000, seed: int = 0, max_discordant: int = 100_000, truth: float | None = None
    ) -> OracleSimulation:
        """Run the SPRT ``runs`` times on simulated tasks (seeded); runs still open at ``max_discordant`` stop there.

        Discordant pairs are recoveries with probability ``truth`` (default: the alternative ``q``); pass
        ``truth=q0`` to measure the type I error.
        """
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise ValueError(f"runs must be a positive integer, got {runs!r}")
        recovery_prob = self.q if truth is None else truth
        if isinstance(recovery_prob, bool) or not 0.0 <= recovery_prob <= 1.0:
            raise ValueError(f"truth must be in [0, 1], got {truth!r}")
        rng = np.random.default_rng(seed)
        llr = np.zeros(runs)
        used = np.zeros(runs, dtype=np.int64)
        open_ = np.ones(runs, dtype=bool)
        for _ in range(max_discordant):
            active = np.flatnonzero(open_)
            if active.size == 0:
                break
            recovered = rng.random(active.size) < recovery_prob
            llr[active] += np.where(recovered, self.step_recovery, self.step_disruption)
            used[active] += 1
            open_[active] = (llr[active] < self.upper) & (llr[active] > self.lower)
        # Concordant tasks between discordant ones: Geometric(pi) tasks per discordant pair in total.
        tasks = used + rng.negative_binomial(np.maximum(used, 1), self.discordant_rate) * (used > 0)
        return OracleSimulation(tasks=tasks.astype(np.int64), accepted_h1=llr >= self.upper, decided=~open_)


def oracle_expected_tasks(p: float, r: float, d: float, alpha: float = 0.05, beta: float = 0.2) -> float:
    """Wald's expected number of tasks for the oracle SPRT of "no effect" against the true (p, r, d)."""
    return OracleSPRT.from_rates(p, r, d, alpha=alpha, beta=beta).expected_tasks()
