"""The fixed-pilot report: every statistic in one frozen object, plus the verdict rule.

Verdict rule (documented in docs/statistics.md): at the chosen level (95% by default) the intervention **helps**
when the two-sided Tango score interval for net lies above 0 *and* the exact McNemar test rejects "no effect" at
the same level (two-sided p <= 1 - level); **harms** likewise below 0; otherwise the pilot is **inconclusive**.
The interval alone is the asymptotic McNemar test, whose false-verdict rate at a handful of discordant pairs is far
above its nominal level (12.5% with 4 of them); requiring the exact test too keeps the verdict's error rate at most
1 - level for every n, and the report never shows a p-value that contradicts its verdict. ``decided_by`` names the
test(s) that decided. The posterior ``P(net > 0)`` is reported beside the verdict, never instead of it.

The paper's own rule (intervene when the point estimate says ``p > p_star``) is shown too, as
``point_rule_intervene``, so the two can be compared honestly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from critic_guard.stats.counts import Estimate, PairedCounts
from critic_guard.stats.intervals import Interval, check_level, tango_interval
from critic_guard.stats.mcnemar_exact import McNemarResult, mcnemar
from critic_guard.stats.posterior import DEFAULT_DRAWS, PosteriorSummary, dirichlet_posterior
from critic_guard.stats.power import verdict_detectable_effect, verdict_sample_size


class PilotConclusion(StrEnum):
    """The three-way conclusion of a pilot (the ``verdict`` of a :class:`PilotReport`; not the policy's per-step
    :class:`critic_guard.policy.Decision`)."""

    HELPS = "helps"
    HARMS = "harms"
    INCONCLUSIVE = "inconclusive"


INTERVAL_TEST = "Tango score interval"
EXACT_TEST = "exact McNemar test"


def decide(net_interval: Interval, exact: McNemarResult) -> tuple[PilotConclusion, str]:
    """The verdict rule and the test(s) that decided it.

    A sign is decided only when the interval excludes 0 and the exact two-sided McNemar p-value is at most
    ``1 - level``. When they disagree the verdict is inconclusive and the test that did not reject is named.
    """
    alpha = 1.0 - net_interval.level
    exact_rejects = exact.pvalue <= alpha + 1e-12  # the tolerance absorbs the float error of 1 - level
    interval_rejects = net_interval.low > 0.0 or net_interval.high < 0.0
    if interval_rejects and exact_rejects:
        return (
            PilotConclusion.HELPS if net_interval.low > 0.0 else PilotConclusion.HARMS
        ), f"{INTERVAL_TEST} and {EXACT_TEST}"
    if interval_rejects:
        return PilotConclusion.INCONCLUSIVE, EXACT_TEST
    if exact_rejects:
        return PilotConclusion.INCONCLUSIVE, INTERVAL_TEST
    return PilotConclusion.INCONCLUSIVE, f"{INTERVAL_TEST} and {EXACT_TEST}"


def verdict_of(counts: PairedCounts, level: float = 0.95) -> tuple[PilotConclusion, str]:
    """Only the verdict of :func:`analyze` and what decided it, without the posterior and power (for running
    tallies and simulations that need nothing else)."""
    return decide(tango_interval(counts, check_level(level)), mcnemar(counts))


@dataclass(frozen=True, slots=True)
class PowerSummary:
    """What the pilot could have seen, and what a conclusive follow-up would take, for the verdict's own rule.

    Both use the observed discordant rate; ``tasks_needed`` also takes the observed net as the true effect, so it
    is a planning figure, not a promise. ``method`` says how they were computed (exact enumeration of the verdict's
    rule, or Connor's approximation for pilots too large to enumerate).
    """

    alpha: float
    power: float
    discordant_rate: Estimate
    minimum_detectable_effect: Estimate
    tasks_needed: Estimate
    more_tasks_needed: Estimate
    method: str


def _power_summary(counts: PairedCounts, alpha: float, power: float) -> PowerSummary:
    if counts.discordant == 0:
        none = Estimate.undefined("no discordant pairs: with a discordant rate of 0 no effect can be detected")
        return PowerSummary(alpha, power, Estimate.defined(0.0), none, none, none, "none")
    discordant = counts.discordant / counts.n
    mde, method = verdict_detectable_effect(counts.n, discordant, alpha=alpha, power=power)
    net = counts.net.require()
    if net == 0:
        needed = Estimate.undefined("observed net is 0: no finite number of tasks is planned for a zero effect")
    else:
        tasks, method = verdict_sample_size(net, discordant, alpha=alpha, power=power)
        needed = Estimate.defined(tasks)
    more = needed if needed.value is None else Estimate.defined(max(0.0, needed.value - counts.n))
    return PowerSummary(alpha, power, Estimate.defined(discordant), mde, needed, more, method)


@dataclass(frozen=True, slots=True)
class PilotReport:
    """Everything a fixed pilot says about an intervention. Build it with :func:`analyze`."""

    counts: PairedCounts
    level: float
    net_interval: Interval
    mcnemar: McNemarResult
    posterior: PosteriorSummary
    power: PowerSummary
    verdict: PilotConclusion
    decided_by: str

    # ---- point estimates (delegated, so there is one definition of each) ----------------------------------------
    @property
    def p(self) -> Estimate:
        return self.counts.p

    @property
    def r(self) -> Estimate:
        return self.counts.r

    @property
    def d(self) -> Estimate:
        return self.counts.d

    @property
    def p_star(self) -> Estimate:
        return self.counts.p_star

    @property
    def net(self) -> Estimate:
        return self.counts.net

    @property
    def d_over_r(self) -> Estimate:
        return self.counts.d_over_r

    @property
    def prefer_selection(self) -> bool | None:
        return self.counts.prefer_selection

    @property
    def point_rule_intervene(self) -> bool | None:
        """The paper's rule on point estimates alone: intervene iff p > p_star (None when p_star is undefined)."""
        p, p_star = self.p.value, self.p_star.value
        return None if p is None or p_star is None else p > p_star

    def estimates(self) -> dict[str, Estimate]:
        return {
            "p": self.p,
            "r": self.r,
            "d": self.d,
            "p_star": self.p_star,
            "net": self.net,
            "d_over_r": self.d_over_r,
            "discordant_rate": self.power.discordant_rate,
            "minimum_detectable_effect": self.power.minimum_detectable_effect,
            "tasks_needed": self.power.tasks_needed,
            "more_tasks_needed": self.power.more_tasks_needed,
        }

    def prior_only(self) -> dict[str, str]:
        """Credible intervals whose point estimate the data leave undefined, by name, with the reason: the data say
        nothing (or too little) about them, so their interval is the uniform prior's, or leans on it."""
        estimates = {"r": self.r, "d": self.d, "p_star": self.p_star, "p_minus_p_star": self.p_star}
        return {name: e.reason for name, e in estimates.items() if e.reason is not None}

    def undefined(self) -> dict[str, str]:
        """Why each missing number is missing, by key."""
        reasons = {name: e.reason for name, e in self.estimates().items() if e.reason is not None}
        if self.prefer_selection is None:
            reasons["prefer_selection"] = self.r.reason or self.d.reason or "r or d is undefined"
        if self.point_rule_intervene is None:
            reasons["point_rule_intervene"] = self.p_star.reason or "p_star is undefined"
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; undefined numbers are null, with their reasons under ``"undefined"``."""
        c = self.counts
        values = {name: e.value for name, e in self.estimates().items()}
        for name in ("tasks_needed", "more_tasks_needed"):
            value = values[name]
            values[name] = None if value is None else int(value)
        return {
            "n": c.n,
            "n00": c.n00,
            "n01": c.n01,
            "n10": c.n10,
            "n11": c.n11,
            "level": self.level,
            **values,
            "net_ci_low": self.net_interval.low,
            "net_ci_high": self.net_interval.high,
            "net_ci_method": self.net_interval.method,
            "mcnemar_p": self.mcnemar.pvalue,
            "mcnemar_midp": self.mcnemar.midp,
            "prob_net_positive": self.posterior.prob_net_positive,
            "credible_intervals": {
                name: [interval.low, interval.high] for name, interval in self.posterior.intervals().items()
            },
            "credible_prior_only": sorted(self.prior_only()),
            "posterior_draws": self.posterior.draws,
            "seed": self.posterior.seed,
            "power": self.power.power,
            "alpha": self.power.alpha,
            "power_method": self.power.method,
            "verdict": self.verdict.value,
            "decided_by": self.decided_by,
            "prefer_selection": self.prefer_selection,
            "point_rule_intervene": self.point_rule_intervene,
            "undefined": self.undefined(),
        }


def analyze(
    counts: PairedCounts, level: float = 0.95, seed: int = 0, draws: int = DEFAULT_DRAWS, power: float = 0.8
) -> PilotReport:
    """Analyse a fixed pilot. ``level`` sets the interval, the exact test's level (``1 - level``), the verdict and
    the power calculation's alpha."""
    level = check_level(level)
    if counts.n == 0:
        raise ValueError("no pairs to analyse")
    net_interval = tango_interval(counts, level)
    exact = mcnemar(counts)
    verdict, decided_by = decide(net_interval, exact)
    return PilotReport(
        counts=counts,
        level=level,
        net_interval=net_interval,
        mcnemar=exact,
        posterior=dirichlet_posterior(counts, level=level, draws=draws, seed=seed),
        power=_power_summary(counts, alpha=round(1.0 - level, 12), power=power),
        verdict=verdict,
        decided_by=decided_by,
    )
