"""What a guard that only observed has to show: its runs, verdicts and flags, and, once outcomes are recorded, how
well its scores predict failure.

Why: ``observe`` is the default mode. Its guard records runs and verdicts but never intervenes, so it writes no
pairs and no lifecycle record, and the pilot report (:mod:`critic_guard.report.numbers`) has nothing to decide
from. A team still wants to see the critic at work before it pilots: how often it flags, at which steps, how its
scores spread and (with ``guard.record_outcome``) its AUROC and ECE (docs/report.md, "Observe mode").

The population is the guard key's production runs (a shadow branch starts at a flag, so counting it would inflate
the flag rate), read through the public store API in a few set-based reads: the counts come from
:meth:`~critic_guard.store.base.PairReader.run_summaries`, the scores of all its runs with their outcomes from one
:meth:`~critic_guard.store.base.RunReader.production_steps` (not one read per run), and AUROC/ECE from
:func:`critic_guard.calibration.critic_quality`, the same helpers the status page and the pilot report use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from critic_guard.report.data import UnknownGuardKeyError
from critic_guard.report.numbers import BAND_WIDTH, WithCriticQuality, quality_of
from critic_guard.store.base import PairStatus, RunSummary, StoreReader

__all__ = ["ObservedNumbers", "ScoreBin", "StepRow", "gather_observed", "report_guard_keys"]


@dataclass(frozen=True, slots=True)
class StepRow:
    """The verdicts at one step index (every attempt counts): how many, how many flagged, their mean score."""

    step: int
    judged: int
    flagged: int
    mean_p_fail: float

    @property
    def flag_rate(self) -> float:
        return self.flagged / self.judged


@dataclass(frozen=True, slots=True)
class ScoreBin:
    """Verdicts with ``low <= p_fail < high`` (the last bin includes 1.0), split by flag and by the run's outcome."""

    low: float
    high: float
    count: int
    flagged: int
    in_failed_runs: int
    in_successful_runs: int


@dataclass(frozen=True, slots=True)
class ObservedNumbers(WithCriticQuality):
    """Everything the observe page prints or plots."""

    source: str
    guard_key: str
    summary: RunSummary
    by_step: tuple[StepRow, ...]
    bins: tuple[ScoreBin, ...]
    open_pairs: int

    @property
    def run_flag_rate(self) -> float:
        """The share of runs flagged at least once: how many runs a pilot would fork (a summary has a run)."""
        return self.summary.flagged_runs / self.summary.runs

    def to_dict(self) -> dict[str, Any]:
        """The JSON embedded in the page (each number the page shows, by the key it is tagged with)."""
        s = self.summary
        return {
            "kind": "observe",
            "runs": s.runs,
            "judged_steps": s.judged_steps,
            "flagged_steps": s.flagged_steps,
            "flag_rate": s.flag_rate,
            "flagged_runs": s.flagged_runs,
            "run_flag_rate": self.run_flag_rate,
            "critic_errors": s.critic_errors,
            "interventions": s.interventions,
            "outcomes": s.outcomes,
            "failures": s.failures,
            **self.quality_numbers(),
            "labeled_verdicts": None if self.quality is None else self.quality.n,
            "open_pairs": self.open_pairs,
        }


def report_guard_keys(store: StoreReader) -> list[str]:
    """Every key a report can be made for: those with pairs or a lifecycle record, and those with runs only."""
    return sorted({*store.guard_keys(), *(s.guard_key for s in store.run_summaries())})


def _bins(scores: list[float], flagged: list[bool], failed: list[bool | None]) -> tuple[ScoreBin, ...]:
    count = round(1 / BAND_WIDTH)
    index = np.minimum((np.asarray(scores, dtype=float) / BAND_WIDTH + 1e-9).astype(int), count - 1)
    rows = []
    for k in range(count):
        at = np.flatnonzero(index == k)
        rows.append(
            ScoreBin(
                round(k * BAND_WIDTH, 10),
                round((k + 1) * BAND_WIDTH, 10),
                int(at.size),
                sum(flagged[i] for i in at),
                sum(failed[i] is True for i in at),
                sum(failed[i] is False for i in at),
            )
        )
    return tuple(rows)


def gather_observed(store: StoreReader, guard_key: str, *, source: str) -> ObservedNumbers:
    """Read one guard key's production runs; :class:`UnknownGuardKeyError` if it has none."""
    summary = next((s for s in store.run_summaries() if s.guard_key == guard_key), None)
    if summary is None:
        raise UnknownGuardKeyError(f"guard key {guard_key!r} has no recorded runs: nothing to report")
    scores: list[float] = []
    flagged: list[bool] = []
    failed: list[bool | None] = []
    steps: dict[int, list[tuple[float, bool]]] = {}
    for step, success in store.production_steps(guard_key):  # shadow branches left out (this module's docstring)
        if step.p_fail is None:  # a critic error: counted in the summary, no score to show
            continue
        scores.append(step.p_fail)
        flagged.append(step.flagged)
        failed.append(None if success is None else not success)
        steps.setdefault(step.step, []).append((step.p_fail, step.flagged))
    by_step = tuple(
        StepRow(k, len(v), sum(f for _, f in v), float(np.mean([p for p, _ in v]))) for k, v in sorted(steps.items())
    )
    labeled = [(p, y) for p, y in zip(scores, failed, strict=True) if y is not None]
    quality, roc, note = None, None, None
    if not labeled:
        note = (
            "no outcomes recorded yet: record each run's outcome (guard.record_outcome(run_id, success), or a "
            "judge) to measure how well the critic's scores predict failure"
        )
    else:
        p, y = np.array([p for p, _ in labeled]), np.array([y for _, y in labeled])
        quality, roc, note = quality_of(p, y, "no critic quality yet")  # e.g. every labeled run succeeded
    open_pairs = len(store.pairs(guard_key, PairStatus.OPEN))
    bins = _bins(scores, flagged, failed)
    return ObservedNumbers(
        source, guard_key, summary, by_step, bins, open_pairs, quality=quality, roc=roc, quality_note=note
    )
