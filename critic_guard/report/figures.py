"""The report's figures as PNG bytes (matplotlib, Agg backend: no display, the same pixels everywhere).

Each function draws one section from :class:`~critic_guard.report.numbers.ReportNumbers` and returns None when the
section has no data, so the page can say so instead of showing an empty plot. matplotlib is the ``plot`` extra and
is imported here only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after matplotlib.use: the backend comes first
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from critic_guard.calibration import CriticQuality
from critic_guard.lifecycle import Transition
from critic_guard.report.numbers import Group, ReportNumbers, Roc
from critic_guard.safe_text import visible

__all__ = ["FIGURES", "quality_figure", "render_figures"]

_R, _D, _NET, _BAND = "#1b7837", "#b2182b", "#2166ac", "#92c5de"
_STATE_COLOURS = {"enabled": "#1b7837", "disabled": "#b2182b", "pilot": "#7f7f7f"}


_LABEL_HEIGHTS = (0.97, 0.47)
"""Where transition labels start (axes fraction; the text runs down about a third of the height), so that two
labels at the same pair count stack instead of overlapping."""
_LABEL_GAP = 0.035
"""Transitions closer than this share of the x axis would overlap at the same height."""


def _plain(value: object) -> str:
    """A stored string as figure text: control characters shown, ``$`` literal (not a mathtext formula)."""
    return visible(value).replace("$", r"\$")


def label_heights(positions: Sequence[float], span: float) -> list[float]:
    """The height of each transition's label (``positions`` sorted): the highest height whose last label is far
    enough away, else the one used longest ago, so labels of transitions a few pairs apart do not overlap."""
    last_at: dict[int, float] = {}
    heights: list[float] = []
    for x in positions:
        free = [level for level in range(len(_LABEL_HEIGHTS)) if x - last_at.get(level, -span) >= _LABEL_GAP * span]
        level = free[0] if free else min(last_at, key=last_at.__getitem__)
        last_at[level] = x
        heights.append(_LABEL_HEIGHTS[level])
    return heights


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def estimates(numbers: ReportNumbers, transitions: Sequence[Transition]) -> bytes | None:
    """p (how often the agent fails) against p_star (the break-even failure rate), with credible intervals."""
    report = numbers.analysis
    p, p_star = report.p.value, report.p_star.value
    if p is None or p_star is None:
        return None
    post = report.posterior
    fig, ax = plt.subplots(figsize=(7.0, 2.2))
    for y, (name, value, interval, colour) in enumerate(
        [("p_star (break-even)", p_star, post.p_star, _D), ("p (control failure rate)", p, post.p, _NET)]
    ):
        ax.errorbar([value], [y], xerr=[[value - interval.low], [interval.high - value]], fmt="o", color=colour,
                    capsize=4, label=name)  # fmt: skip
    ax.set_yticks([0, 1], ["p_star", "p"])
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel(f"rate ({report.level:.0%} credible intervals); intervening helps where p > p_star")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


_MAX_DRAWN = 20_000
"""Pairs drawn at most: a figure 7 inches wide shows no more, and a million points cost seconds to draw."""


def _drawn_points(n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Every pair up to :data:`_MAX_DRAWN`; beyond, evenly spaced ones, always with the last (the band "now")."""
    if n <= _MAX_DRAWN:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, _MAX_DRAWN).astype(np.int64), n - 1])


def net_over_time(numbers: ReportNumbers, transitions: Sequence[Transition]) -> bytes | None:
    """Net after each pair with the monitor's confidence sequence, and the lifecycle transitions where they happened."""
    track = numbers.monitor
    if not len(track.net):
        return None
    shown = _drawn_points(len(track.net))
    t = shown + 1
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    ax.fill_between(t, track.low[shown], track.high[shown], color=_BAND, alpha=0.6,
                    label=f"{track.level:.0%} confidence sequence (the monitor's)")  # fmt: skip
    ax.plot(t, track.net[shown], color=_NET, label="net so far")
    ax.axhline(0.0, color="black", linewidth=0.8)
    placed = sorted(
        ((at, t) for t in transitions if isinstance(at := t.evidence.get("pairs"), int) and at > 0),
        key=lambda pair: pair[0],
    )
    heights = label_heights([at for at, _ in placed], max(2, len(track.net)) - 1)
    for (at, transition), height in zip(placed, heights, strict=True):
        colour = _STATE_COLOURS.get(transition.to_state.value, "black")
        ax.axvline(at, color=colour, linestyle="--", linewidth=1.2)
        label = f"{transition.to_state.value} ({_plain(transition.actor)})"
        ax.annotate(label, (at, height), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=8, color=colour)  # fmt: skip
    ax.set_xlim(1, max(2, len(track.net)))
    ax.set_ylim(-1.0, 1.0)
    ax.set_xlabel("pairs completed")
    ax.set_ylabel("net effect")
    # above the axes: inside, it would cover the band or a transition's label
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return _png(fig)


def _rates(groups: Sequence[Group], xlabel: str) -> bytes | None:
    return _png(rates_figure(groups, xlabel)) if groups else None


def rates_figure(groups: Sequence[Group], xlabel: str) -> Figure:
    """r and d side by side for each group, "n/a" where a rate has no runs to divide by (the caller closes it)."""
    fig, ax = plt.subplots(figsize=(7.0, 2.8))
    width = 0.38
    for k, group in enumerate(groups):
        r, d = group.counts.r.value, group.counts.d.value
        for offset, value, colour in ((-width / 2, r, _R), (width / 2, d, _D)):
            if value is None:  # no runs to divide by: said where the bar would stand, inside the axes
                ax.text(k + offset, 0.02, "n/a", ha="center", va="bottom", fontsize=7, clip_on=True)
            else:
                ax.bar(k + offset, value, width, color=colour)
        ax.text(k, 1.02, f"n={group.counts.n}", ha="center", fontsize=8)
    handles = [
        Patch(color=_R, label="r (recoveries / control failures)"),
        Patch(color=_D, label="d (disruptions / control successes)"),
    ]
    ax.set_xticks(range(len(groups)), [_plain(g.label) for g in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)  # bars alone set the limits, so a group with no bar left "n/a" outside
    ax.set_ylim(0.0, 1.12)
    ax.set_xlabel(xlabel)
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    return fig


def by_step(numbers: ReportNumbers, transitions: Sequence[Transition]) -> bytes | None:
    """r and d by the step of the first flag (where the two arms forked)."""
    return _rates(numbers.by_step, "step of the first flag")


def by_band(numbers: ReportNumbers, transitions: Sequence[Transition]) -> bytes | None:
    """r and d by the critic's p_fail at the first flag."""
    return _rates(numbers.by_band, "critic p_fail at the first flag")


def critic_quality(numbers: ReportNumbers, transitions: Sequence[Transition]) -> bytes | None:
    """ROC curve and reliability diagram of the critic's scores for predicting the run's failure."""
    if numbers.quality is None or numbers.roc is None:
        return None
    return quality_figure(numbers.quality, numbers.roc)


def quality_figure(quality: CriticQuality, roc: Roc) -> bytes:
    """ROC curve and reliability diagram side by side (the pilot report's and the observe report's)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 3.2))
    left.plot(roc.false_positive_rate, roc.true_positive_rate, color=_NET)
    left.plot([0, 1], [0, 1], color="grey", linestyle=":")
    left.set_title(f"ROC (AUROC {quality.auroc:.3f})", fontsize=10)
    left.set_xlabel("false positive rate (steps of successful runs)")
    left.set_ylabel("true positive rate (steps of failed runs)")
    filled = [b for b in quality.reliability if b.mean_score is not None and b.failure_rate is not None]
    right.plot([0, 1], [0, 1], color="grey", linestyle=":")
    right.plot([b.mean_score for b in filled], [b.failure_rate for b in filled], "o-", color=_D)
    right.set_title(f"reliability (ECE {quality.ece:.3f})", fontsize=10)
    right.set_xlabel("mean p_fail in bin")
    right.set_ylabel("share of steps whose run failed")
    for ax in (left, right):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    return _png(fig)


Draw = Callable[[ReportNumbers, Sequence[Transition]], bytes | None]
FIGURES: dict[str, Draw] = {
    "estimates": estimates,
    "net_over_time": net_over_time,
    "by_step": by_step,
    "by_band": by_band,
    "critic_quality": critic_quality,
}
"""Figure name (also the PNG file's stem) -> drawing function, in page order."""


def render_figures(numbers: ReportNumbers, transitions: Sequence[Transition]) -> dict[str, bytes]:
    """Every figure that has data, as PNG bytes by name."""
    drawn = {name: draw(numbers, transitions) for name, draw in FIGURES.items()}
    return {name: png for name, png in drawn.items() if png is not None}
