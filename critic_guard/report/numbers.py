"""The numbers of a pilot report, computed once from :class:`~critic_guard.report.data.ReportData`.

Every statistic of the pilot as a whole comes from :func:`critic_guard.stats.analyze` (the same object
``critic-guard analyze --json`` prints), the band over time from :func:`critic_guard.stats.run_monitor` (the
arithmetic of the guard's own monitor: the confidence sequence its e-processes invert to, so the band leaves 0
exactly where the monitor proves an effect) and the critic's quality from
:func:`critic_guard.calibration.critic_quality`: nothing here recomputes them another way. What is added are the
breakdowns (r and d by step of first flag and by critic score band, as :class:`PairedCounts` so that r and d keep
their one definition), the ROC curve's points, the ``min_step`` the pairs support, and the recommendation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from critic_guard.calibration import CriticQuality, critic_quality
from critic_guard.report.data import PairPoint, ReportData
from critic_guard.stats import Decision, PairedCounts, PilotReport, analyze, run_monitor, side_alpha

__all__ = ["Group", "MinStep", "MonitorTrack", "Recommendation", "ReportNumbers", "Roc", "compute", "roc_curve"]

BAND_WIDTH = 0.1
"""Critic score bands are [0.0, 0.1), [0.1, 0.2), ... [0.9, 1.0]; empty ones are left out."""


class Recommendation(StrEnum):
    """What to do next, in the order of the first screen's headline."""

    INTERVENE = "intervene"
    DO_NOT_INTERVENE = "do_not_intervene"
    PREFER_SELECTION = "prefer_selection"
    RUN_MORE_TASKS = "run_more_tasks"


def recommend(report: PilotReport) -> Recommendation:
    """Intervene only when the interval proves benefit. Harm, or no effect worth chasing: do not (best-of-N
    selection when a good run is likelier to be broken than a bad one rescued, d > r). A positive but unproven
    effect: run the tasks the power calculation says are missing."""
    if report.verdict is Decision.HELPS:
        return Recommendation.INTERVENE
    net = report.net.value
    more = report.power.more_tasks_needed.value
    if report.verdict is Decision.INCONCLUSIVE and net is not None and net > 0 and more is not None:
        return Recommendation.RUN_MORE_TASKS
    return Recommendation.PREFER_SELECTION if report.prefer_selection else Recommendation.DO_NOT_INTERVENE


@dataclass(frozen=True, slots=True)
class Group:
    """The pairs of one slice (a step of first flag, a score band): r and d are ``counts.r`` / ``counts.d``."""

    label: str
    counts: PairedCounts


@dataclass(frozen=True, slots=True)
class MonitorTrack:
    """Net after each pair in completion order, with the anytime-valid confidence sequence around it.

    ``alpha`` and ``split`` are the monitor's (``alpha`` bounds both e-processes together when ``split``);
    ``level`` is the band's confidence, ``1 - alpha`` when split.
    """

    alpha: float
    split: bool
    level: float
    net: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    harm_proven_at: int | None
    benefit_proven_at: int | None


@dataclass(frozen=True, slots=True)
class MinStep:
    """The smallest step of first flag whose cut-off maximises the observed net (ties: the earlier step).

    ``net_kept`` is the net effect over all ``n`` pairs had only flags from ``value`` on been acted upon; a run
    first flagged earlier might be flagged again later, so this is a point-estimate suggestion, not a proof.
    """

    value: int
    earliest: int
    net_kept: float
    net_all: float


@dataclass(frozen=True, slots=True)
class Roc:
    """Points of the ROC curve of the critic's scores for predicting failure."""

    false_positive_rate: tuple[float, ...]
    true_positive_rate: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ReportNumbers:
    """Everything the page prints or plots. ``quality``/``roc`` are None with ``quality_note`` saying why."""

    analysis: PilotReport
    recommendation: Recommendation
    monitor: MonitorTrack
    by_step: tuple[Group, ...]
    min_step: MinStep | None
    by_band: tuple[Group, ...]
    quality: CriticQuality | None
    roc: Roc | None
    quality_note: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON embedded in the page: ``analysis`` is exactly ``critic-guard analyze --json``'s object."""
        return {
            "analysis": self.analysis.to_dict(),
            "recommendation": self.recommendation.value,
            "min_step": None if self.min_step is None else self.min_step.value,
            "auroc": None if self.quality is None else self.quality.auroc,
            "ece": None if self.quality is None else self.quality.ece,
            "monitor_alpha": self.monitor.alpha,
            "monitor_level": self.monitor.level,
            "monitor_final": [self.monitor.low[-1], self.monitor.high[-1]] if self.monitor.net else None,
        }


def _groups(
    points: Iterable[PairPoint], key: Callable[[PairPoint], Hashable | None], label: Callable[[Any], str]
) -> tuple[Group, ...]:
    cells: dict[Any, list[tuple[bool, bool]]] = {}
    for point in points:
        k = key(point)
        if k is not None:
            cells.setdefault(k, []).append((point.control, point.treatment))
    return tuple(Group(label(k), PairedCounts.from_pairs(cells[k])) for k in sorted(cells))


def _band(p_fail: float | None) -> int | None:
    if p_fail is None:
        return None
    return min(int(p_fail / BAND_WIDTH + 1e-9), round(1 / BAND_WIDTH) - 1)


def _band_label(index: int) -> str:
    low, high = index * BAND_WIDTH, (index + 1) * BAND_WIDTH
    close = "]" if high >= 1.0 - 1e-9 else ")"
    return f"[{low:.1f}, {high:.1f}{close}"


def _min_step(points: tuple[PairPoint, ...], n: int) -> MinStep | None:
    steps = sorted({p.fork_step for p in points if p.flagged and p.fork_step is not None})
    if not steps:
        return None

    def net_from(step: int) -> float:
        kept = [p for p in points if p.flagged and p.fork_step is not None and p.fork_step >= step]
        return sum(int(p.treatment) - int(p.control) for p in kept) / n

    best = max(steps, key=lambda s: (net_from(s), -s))
    return MinStep(best, steps[0], net_from(best), net_from(steps[0]))


def _monitor(points: tuple[PairPoint, ...], alpha: float, split: bool) -> MonitorTrack:
    x = np.array([[(int(p.control) - int(p.treatment) + 1) / 2.0 for p in points]])
    paths = run_monitor(x, alpha=alpha, split=split)
    assert paths.net_low is not None and paths.net_high is not None
    t = np.arange(1, len(points) + 1)
    net = np.cumsum([int(p.treatment) - int(p.control) for p in points]) / t
    harm, benefit = int(paths.harm_times()[0]), int(paths.benefit_times()[0])
    return MonitorTrack(
        alpha=alpha,
        split=split,
        level=1.0 - 2.0 * side_alpha(alpha, split),
        net=tuple(float(v) for v in net),
        low=tuple(float(v) for v in paths.net_low[0]),
        high=tuple(float(v) for v in paths.net_high[0]),
        harm_proven_at=harm or None,
        benefit_proven_at=benefit or None,
    )


def roc_curve(scores: np.ndarray[Any, Any], failed: np.ndarray[Any, Any]) -> Roc:
    """The ROC curve of ``scores`` for predicting ``failed`` (also used by the observe report, report/observed.py)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], failed[order].astype(float)
    last_of_tie = np.r_[np.diff(s) != 0, True]  # one point per distinct threshold
    tp, fp = np.cumsum(y)[last_of_tie], np.cumsum(1.0 - y)[last_of_tie]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (y.size - y.sum())]
    return Roc(tuple(float(v) for v in fpr), tuple(float(v) for v in tpr))


def _quality(data: ReportData) -> tuple[CriticQuality | None, Roc | None, str | None]:
    if data.store is None:
        return None, None, "a pairs file has no critic scores; build the report from the store (--store)"
    scores = np.asarray(data.store.scores, dtype=float)
    failed = np.asarray(data.store.failed, dtype=bool)
    try:
        quality = critic_quality(scores, failed)
    except ValueError as exc:
        return None, None, f"no critic quality: {exc}"
    return quality, roc_curve(scores, failed), None


def compute(data: ReportData, *, level: float = 0.95, seed: int = 0) -> ReportNumbers:
    """All numbers of the report. ``level`` and ``seed`` mean what they mean for ``critic-guard analyze``; the
    monitor band uses the guard's own alpha (and split) when the store has one, else ``1 - level`` split between
    the two e-processes (the default), so its level is ``level``."""
    analysis = analyze(data.counts, level=level, seed=seed)
    alpha = data.store.monitor_alpha if data.store is not None and data.store.monitor_alpha is not None else None
    split = True if data.store is None or alpha is None else data.store.monitor_split
    quality, roc, note = _quality(data)
    return ReportNumbers(
        analysis=analysis,
        recommendation=recommend(analysis),
        monitor=_monitor(data.pairs, alpha if alpha is not None else round(1.0 - analysis.level, 12), split),
        by_step=_groups(data.pairs, lambda p: p.fork_step if p.flagged else None, lambda s: f"step {s}"),
        min_step=_min_step(data.pairs, data.counts.n),
        by_band=_groups(data.pairs, lambda p: _band(p.p_fail) if p.flagged else None, _band_label),
        quality=quality,
        roc=roc,
        quality_note=note,
    )
