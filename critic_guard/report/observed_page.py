"""The observe report: one self-contained HTML page for a guard key with runs but no completed pairs.

It answers what a team asks before piloting (docs/report.md, "Observe mode"): how often does the critic flag, at
which steps, how do its scores spread, and, once outcomes are recorded, how well do they predict failure (AUROC,
ECE). It cannot say whether intervening helps: only a pilot measures that, so its first screen says to run one.
Built like the pilot report (:mod:`critic_guard.report.html`) on the same page (:mod:`critic_guard.report.page`):
the same style and number tags, and a JSON block (:meth:`~critic_guard.report.observed.ObservedNumbers.to_dict`)
every tagged number is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after matplotlib.use: the backend comes first

from critic_guard.calibration import CriticQuality
from critic_guard.report.build import BuiltReport
from critic_guard.report.figures import _png, quality_figure
from critic_guard.report.observed import ObservedNumbers
from critic_guard.report.page import CSS, document, figure, nodata, number, quality_section, stored, table

__all__ = ["build_observed_report"]

_FLAGGED, _PASSED, _FAILED, _SUCCEEDED = "#b2182b", "#92c5de", "#b2182b", "#1b7837"
_OBSERVE_CSS = ".decision.observe{background:#44546a}"


def score_distribution(numbers: ObservedNumbers) -> bytes | None:
    """Histogram of the critic's p_fail (flagged verdicts stacked on the rest) and, with outcomes, the scores of
    steps in failed runs against those in successful runs (each as a share of its runs' verdicts)."""
    bins = numbers.bins
    if not any(b.count for b in bins):
        return None
    labeled = sum(b.in_failed_runs + b.in_successful_runs for b in bins)
    fig, axes = plt.subplots(1, 2 if labeled else 1, figsize=(7.0, 3.0), squeeze=False)
    centres = [(b.low + b.high) / 2 for b in bins]
    width = bins[0].high - bins[0].low
    left = axes[0][0]
    left.bar(centres, [b.count - b.flagged for b in bins], width * 0.9, color=_PASSED, label="not flagged")
    left.bar(centres, [b.flagged for b in bins], width * 0.9, bottom=[b.count - b.flagged for b in bins],
             color=_FLAGGED, label="flagged")  # fmt: skip
    left.set_xlabel("critic p_fail")
    left.set_ylabel("verdicts")
    left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    if labeled:
        right = axes[0][1]
        failed = sum(b.in_failed_runs for b in bins)
        succeeded = sum(b.in_successful_runs for b in bins)
        for offset, total, counts, colour, label in (
            (-width / 4, failed, [b.in_failed_runs for b in bins], _FAILED, "steps of failed runs"),
            (width / 4, succeeded, [b.in_successful_runs for b in bins], _SUCCEEDED, "steps of successful runs"),
        ):
            shares = [c / total if total else 0.0 for c in counts]
            right.bar([c + offset for c in centres], shares, width * 0.45, color=colour, label=label)
        right.set_xlabel("critic p_fail")
        right.set_ylabel("share of the group's verdicts")
        right.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, fontsize=8, frameon=False)
    for ax in axes[0]:
        ax.set_xlim(0.0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def render_figures(numbers: ObservedNumbers) -> dict[str, bytes]:
    """Every figure that has data, as PNG bytes by name (also the PNG file's stem)."""
    drawn = {
        "score_distribution": score_distribution(numbers),
        "critic_quality": None
        if numbers.quality is None or numbers.roc is None
        else quality_figure(numbers.quality, numbers.roc),
    }
    return {name: png for name, png in drawn.items() if png is not None}


def _pct(key: str, value: float | None) -> str:
    return number(key, None if value is None else 100.0 * value, ".1f") + ("%" if value is not None else "")


def _first_screen(numbers: ObservedNumbers) -> str:
    s = numbers.summary
    items = [
        ("runs", number("runs", s.runs, ".0f")),
        ("judged steps", number("judged_steps", s.judged_steps, ".0f")),
        ("flag rate (flagged / judged steps)", _pct("flag_rate", s.flag_rate)),
        ("runs flagged at least once", _pct("run_flag_rate", numbers.run_flag_rate)),
        ("runs with an outcome", number("outcomes", s.outcomes, ".0f")),
    ]
    if numbers.quality is not None:
        items += [
            ("critic AUROC", number("auroc", numbers.quality.auroc)),
            ("critic ECE", number("ece", numbers.quality.ece)),
        ]
    certainty = "".join(f"<li>{label}<b>{value}</b></li>" for label, value in items)
    acted = (
        f" Its policy intervened {number('interventions', s.interventions, '.0f')} times (mode on), but with no pairs "
        "the effect of those interventions is unknown."
        if s.interventions
        else " Nothing was intervened."
    )
    return (
        '<section class="decision observe" id="decision" data-verdict="observe">'
        '<p class="headline">Observed only: run a pilot next</p>'
        f'<p class="why">The critic judged {s.judged_steps} steps of {s.runs} runs and flagged '
        f"{_pct('flag_rate', s.flag_rate)} of them.{acted} No pairs were recorded, so this page cannot say "
        "whether intervening would help or harm.</p>"
        f'<ul class="certainty">{certainty}</ul>{_next_step(numbers)}</section>'
    )


def _next_step(numbers: ObservedNumbers) -> str:
    return (
        '<p class="next" data-recommendation="run_pilot">Recommendation: run a pilot next (mode "pilot" with a judge, '
        f"or critic-guard pilot). It would fork the {numbers.run_flag_rate:.0%} of runs the critic flags and measure "
        "how many failing runs an intervention rescues and how many good runs it breaks, which a flag rate and an "
        "AUROC cannot tell.</p>"
    )


def _open_pairs(n: int) -> str:
    return "1 pair is" if n == 1 else f"{n} pairs are"


def _overview(numbers: ObservedNumbers) -> str:
    s = numbers.summary
    rows = [
        ["production runs", number("runs", s.runs, ".0f")],
        ["judged steps (reviews with a verdict)", number("judged_steps", s.judged_steps, ".0f")],
        ["flagged steps", number("flagged_steps", s.flagged_steps, ".0f")],
        ["flag rate", _pct("flag_rate", s.flag_rate)],
        ["runs flagged at least once", number("flagged_runs", s.flagged_runs, ".0f")],
        ["critic errors (no verdict; the guard failed open)", number("critic_errors", s.critic_errors, ".0f")],
        [
            "runs with an outcome / failed",
            f"{number('outcomes', s.outcomes, '.0f')} / {number('failures', s.failures, '.0f')}",
        ],
    ]
    out = "<h2>What the guard recorded</h2>" + table(["", "value"], rows)
    if numbers.open_pairs:
        out += (
            f'<p class="note">{_open_pairs(numbers.open_pairs)} open and will not complete until both of their runs '
            "have an outcome: a pilot needs a judge (or guard.record_outcome for each run).</p>"
        )
    return out


def _by_step(numbers: ObservedNumbers) -> str:
    out = "<h2>Verdicts by step</h2>"
    if not numbers.by_step:
        return out + nodata("No verdicts recorded.")
    rows = [
        [f"step {r.step}", str(r.judged), str(r.flagged), f"{r.flag_rate:.1%}", f"{r.mean_p_fail:.3f}"]
        for r in numbers.by_step
    ]
    return (
        out
        + table(["", "judged", "flagged", "flag rate", "mean p_fail"], rows)
        + '<p class="note">The policy never flags before its min_step (steps 0 and 1 by default), however high the '
        "score; a pilot forks at a run's first flagged step.</p>"
    )


def _scores(numbers: ObservedNumbers, figures: Mapping[str, bytes]) -> str:
    out = "<h2>Score distribution</h2>"
    if "score_distribution" not in figures:
        return out + nodata("No verdicts recorded.")
    rows = [
        [
            f"[{b.low:.1f}, {b.high:.1f}{']' if b.high >= 1.0 else ')'}",
            str(b.count),
            str(b.flagged),
            str(b.in_failed_runs),
            str(b.in_successful_runs),
        ]
        for b in numbers.bins
        if b.count
    ]
    return (
        out
        + figure(figures, "score_distribution", "histogram of the critic's p_fail")
        + table(["p_fail", "verdicts", "flagged", "in failed runs", "in successful runs"], rows)
        + '<p class="note">A critic whose scores of failed and successful runs overlap will flag good runs as often '
        "as bad ones; tau sets where the flags start.</p>"
    )


def _quality(numbers: ObservedNumbers, figures: Mapping[str, bytes]) -> str:
    def rows(quality: CriticQuality) -> list[list[str]]:
        labeled = (
            f"{number('labeled_verdicts', quality.n, '.0f')} ({quality.n_failed} in failed runs) from "
            f"{numbers.summary.outcomes} runs with an outcome"
        )
        return [
            ["AUROC (step scores against the run's outcome)", number("auroc", quality.auroc)],
            ["ECE (10 equal-width bins)", number("ece", quality.ece)],
            ["labeled verdicts", labeled],
        ]

    return quality_section(
        numbers.quality,
        (numbers.quality_note or "No critic quality.") + ".",
        ["", "value"],
        rows,
        "every production run with an outcome counts. A high AUROC does not make intervening safe: a pilot measures "
        "what the interventions do.",
        figures,
    )


def render_page(numbers: ObservedNumbers, figures: Mapping[str, bytes]) -> str:
    """The whole page."""
    body = "".join(
        [
            "<h1>critic-guard observe report</h1>",
            f'<p class="source">{stored(numbers.source)} &middot; guard key <code>{stored(numbers.guard_key)}'
            "</code></p>",
            _first_screen(numbers),
            _overview(numbers),
            _by_step(numbers),
            _scores(numbers, figures),
            _quality(numbers, figures),
            "<footer>Made by critic-guard report. What each section means: docs/report.md (Observe mode) in the "
            "critic-guard repository.</footer>",
        ]
    )
    return document("observed only", CSS + _OBSERVE_CSS, body, numbers.to_dict())


def build_observed_report(numbers: ObservedNumbers) -> BuiltReport:
    """Figures and page for an observed guard key, ready to :meth:`~BuiltReport.write`."""
    figures = render_figures(numbers)
    return BuiltReport(render_page(numbers, figures), figures, numbers)
