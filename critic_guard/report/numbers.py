"""The numbers of a pilot report, computed once from :class:`~critic_guard.report.data.ReportData`.

Every statistic of the pilot as a whole comes from :func:`critic_guard.stats.analyze` (the same object
``critic-guard analyze --json`` prints), the band over time and the proofs from the monitor states the lifecycle
stored with each pair (:mod:`critic_guard.report.track`: what it did, resets included; for a pairs file,
:func:`critic_guard.stats.run_monitor`, the same arithmetic) and the critic's quality from
:func:`critic_guard.calibration.critic_quality`: nothing here recomputes them another way. What is added are the
breakdowns (r and d by step of first flag and by critic score band, as :class:`PairedCounts` so that r and d keep
their one definition), the ROC curve's points, the ``min_step`` the pairs support, and the recommendation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from critic_guard.calibration import CriticQuality, critic_quality
from critic_guard.report.columns import NO_STEP, PairColumns
from critic_guard.report.data import ReportData, StoredTrack
from critic_guard.stats import PairedCounts, PilotConclusion, PilotReport, analyze, run_monitor, side_alpha

__all__ = [
    "Group",
    "MinStep",
    "MonitorTrack",
    "Recommendation",
    "ReportNumbers",
    "Roc",
    "WithCriticQuality",
    "compute",
    "quality_of",
    "roc_curve",
]

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
    if report.verdict is PilotConclusion.HELPS:
        return Recommendation.INTERVENE
    net = report.net.value
    more = report.power.more_tasks_needed.value
    if report.verdict is PilotConclusion.INCONCLUSIVE and net is not None and net > 0 and more is not None:
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
    net: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
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

    false_positive_rate: NDArray[np.float64]
    true_positive_rate: NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class WithCriticQuality:
    """The critic's quality both reports show (the pilot's, the observe report's, report/observed.py): AUROC and
    ECE with the ROC curve, or ``quality``/``roc`` None with ``quality_note`` saying why (:func:`quality_of`)."""

    quality: CriticQuality | None
    roc: Roc | None
    quality_note: str | None

    def quality_numbers(self) -> dict[str, float | None]:
        """AUROC and ECE as the embedded JSON names them (None when there is no quality)."""
        return {
            "auroc": None if self.quality is None else self.quality.auroc,
            "ece": None if self.quality is None else self.quality.ece,
        }


@dataclass(frozen=True, slots=True)
class ReportNumbers(WithCriticQuality):
    """Everything the page prints or plots."""

    analysis: PilotReport
    recommendation: Recommendation
    monitor: MonitorTrack
    by_step: tuple[Group, ...]
    min_step: MinStep | None
    by_band: tuple[Group, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON embedded in the page: ``analysis`` is exactly ``critic-guard analyze --json``'s object."""
        return {
            "analysis": self.analysis.to_dict(),
            "recommendation": self.recommendation.value,
            "min_step": None if self.min_step is None else self.min_step.value,
            **self.quality_numbers(),
            "monitor_alpha": self.monitor.alpha,
            "monitor_level": self.monitor.level,
            "monitor_final": [float(self.monitor.low[-1]), float(self.monitor.high[-1])]
            if len(self.monitor.net)
            else None,
        }


def _counts(cells: NDArray[np.int64]) -> PairedCounts:
    return PairedCounts(*(int(n) for n in np.bincount(cells, minlength=4)))


def _groups(pairs: PairColumns, keys: NDArray[np.int64], label: Callable[[int], str]) -> tuple[Group, ...]:
    """One group per distinct key of the flagged pairs (key -1: not in any group), in key order."""
    chosen = (keys >= 0) & (pairs.flagged if pairs.flagged is not None else np.zeros(len(pairs), dtype=bool))
    cells, kept = pairs.cells[chosen], keys[chosen]
    return tuple(Group(label(int(k)), _counts(cells[kept == k])) for k in np.unique(kept))


def _bands(p_fail: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each score's band index (-1: no score); the last band is closed, [0.9, 1.0]."""
    index = np.full(p_fail.shape, -1, dtype=np.int64)
    scored = ~np.isnan(p_fail)
    index[scored] = np.minimum((p_fail[scored] / BAND_WIDTH + 1e-9).astype(np.int64), round(1 / BAND_WIDTH) - 1)
    return index


def _band_label(index: int) -> str:
    low, high = index * BAND_WIDTH, (index + 1) * BAND_WIDTH
    close = "]" if high >= 1.0 - 1e-9 else ")"
    return f"[{low:.1f}, {high:.1f}{close}"


def _min_step(pairs: PairColumns, n: int) -> MinStep | None:
    if pairs.flagged is None:
        return None
    with_step = pairs.flagged & (pairs.fork_step != NO_STEP)
    fork_step = pairs.fork_step[with_step]
    gain = pairs.treatment[with_step].astype(np.int64) - pairs.control[with_step].astype(np.int64)
    steps = [int(s) for s in np.unique(fork_step)]
    if not steps:
        return None

    def net_from(step: int) -> float:
        return int(gain[fork_step >= step].sum()) / n

    best = max(steps, key=lambda s: (net_from(s), -s))
    return MinStep(best, steps[0], net_from(best), net_from(steps[0]))


def _monitor(pairs: PairColumns, alpha: float, split: bool, stored: StoredTrack | None) -> MonitorTrack:
    """The band and proofs the lifecycle stored (a store), else a monitor run over the pairs (a pairs file)."""
    gain = pairs.treatment.astype(np.int64) - pairs.control.astype(np.int64)
    net = np.cumsum(gain) / np.arange(1, len(pairs) + 1)
    if stored is not None:
        low, high = stored.low, stored.high
        harm, benefit = stored.harm_proven_at, stored.benefit_proven_at
    else:
        paths = run_monitor(((1 - gain) / 2.0)[None, :], alpha=alpha, split=split)
        assert paths.net_low is not None and paths.net_high is not None
        low, high = paths.net_low[0], paths.net_high[0]
        harm, benefit = int(paths.harm_times()[0]) or None, int(paths.benefit_times()[0]) or None
    return MonitorTrack(
        alpha=alpha,
        split=split,
        level=1.0 - 2.0 * side_alpha(alpha, split),
        net=net,
        low=low,
        high=high,
        harm_proven_at=harm,
        benefit_proven_at=benefit,
    )


def roc_curve(scores: np.ndarray[Any, Any], failed: np.ndarray[Any, Any]) -> Roc:
    """The ROC curve of ``scores`` for predicting ``failed`` (also used by the observe report, report/observed.py)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], failed[order].astype(float)
    last_of_tie = np.r_[np.diff(s) != 0, True]  # one point per distinct threshold
    tp, fp = np.cumsum(y)[last_of_tie], np.cumsum(1.0 - y)[last_of_tie]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (y.size - y.sum())]
    return Roc(fpr, tpr)


def quality_of(
    scores: NDArray[np.float64], failed: NDArray[np.bool_], missing: str
) -> tuple[CriticQuality | None, Roc | None, str | None]:
    """The critic's quality and ROC curve from labeled verdicts, or why there is none (``missing``: the reason's
    start, followed by what :func:`critic_guard.calibration.critic_quality` refused, e.g. no failed run)."""
    try:
        quality = critic_quality(scores, failed)
    except ValueError as exc:
        return None, None, f"{missing}: {exc}"
    return quality, roc_curve(scores, failed), None


def _quality(data: ReportData) -> tuple[CriticQuality | None, Roc | None, str | None]:
    if data.store is None:
        return None, None, "a pairs file has no critic scores; build the report from the store (--store)"
    scores = np.asarray(data.store.scores, dtype=float)
    return quality_of(scores, np.asarray(data.store.failed, dtype=bool), "no critic quality")


def compute(data: ReportData, *, level: float = 0.95, seed: int = 0) -> ReportNumbers:
    """All numbers of the report. ``level`` and ``seed`` mean what they mean for ``critic-guard analyze``; the
    monitor band uses the guard's own alpha (and split) when the store has one, else ``1 - level`` split between
    the two e-processes (the default), so its level is ``level``."""
    pairs = data.pairs
    analysis = analyze(data.counts, level=level, seed=seed)
    alpha = data.store.monitor_alpha if data.store is not None and data.store.monitor_alpha is not None else None
    split = True if data.store is None or alpha is None else data.store.monitor_split
    quality, roc, note = _quality(data)
    return ReportNumbers(
        analysis=analysis,
        recommendation=recommend(analysis),
        monitor=_monitor(
            pairs,
            alpha if alpha is not None else round(1.0 - analysis.level, 12),
            split,
            None if data.store is None else data.store.track,
        ),
        by_step=_groups(pairs, pairs.fork_step, lambda s: f"step {s}"),
        min_step=_min_step(pairs, len(pairs)),
        by_band=_groups(pairs, _bands(pairs.p_fail), _band_label),
        quality=quality,
        roc=roc,
        quality_note=note,
    )
