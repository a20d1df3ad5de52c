"""The evidence sections of the pilot page (:mod:`critic_guard.report.html` puts them in order after its first
screen): the 2x2 table, the estimates against the break-even rate, the tests, the net effect over time with the
lifecycle's transitions, r and d by step and by score band, the critic's quality, A/A noise and the pairs left out.

Why apart from the first screen: that one says what to do; these say why, one section each, and a section without
data says why it is empty instead of disappearing (docs/report.md). Numbers are tagged as
:mod:`critic_guard.report.page` describes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from critic_guard.calibration import CriticQuality
from critic_guard.report.data import ReportData, StoreExtras
from critic_guard.report.numbers import Group, ReportNumbers
from critic_guard.report.page import (
    estimate,
    figure,
    formatted,
    interval,
    net_interval,
    nodata,
    number,
    percent,
    quality_section,
    stored,
    table,
)
from critic_guard.stats import Interval, PilotReport

__all__ = ["aa_noise", "by_band", "by_step", "cells", "estimates", "evidence", "incomplete", "over_time", "quality"]


def _credible(name: str, bounds: Interval, fmt: str = ".3f", prior_only: bool = False) -> str:
    """A credible interval; ``prior_only`` marks one whose estimate the data leave undefined (its interval is the
    prior's, or leans on it: ``analysis.credible_prior_only``)."""
    key = f"analysis.credible_intervals.{name}"
    shown = interval(f"{key}.0", f"{key}.1", bounds.low, bounds.high, fmt)
    return f'{shown} <span class="prior-only">prior only</span>' if prior_only else shown


def cells(report: PilotReport) -> str:
    c = report.counts
    rows = [
        [
            "control fails",
            f"{number('analysis.n00', c.n00, '.0f')} both fail",
            f"{number('analysis.n01', c.n01, '.0f')} recoveries",
        ],
        [
            "control succeeds",
            f"{number('analysis.n10', c.n10, '.0f')} disruptions",
            f"{number('analysis.n11', c.n11, '.0f')} both succeed",
        ],
    ]
    note = (
        '<p class="note">Only the discordant pairs (recoveries and disruptions) say which arm is better; the '
        "others show how often intervening changes nothing.</p>"
    )
    return "<h2>Pairs: the 2x2 table</h2>" + table(["", "treatment fails", "treatment succeeds"], rows) + note


def estimates(report: PilotReport, figures: Mapping[str, bytes]) -> str:
    post = report.posterior
    pct = f"{report.level:.0%}"
    prior = report.prior_only()
    rows = [
        ["p", estimate("analysis.p", report.p), _credible("p", post.p), "control failure rate"],
        [
            "r",
            estimate("analysis.r", report.r),
            _credible("r", post.r, prior_only="r" in prior),
            "recoveries / control failures",
        ],
        [
            "d",
            estimate("analysis.d", report.d),
            _credible("d", post.d, prior_only="d" in prior),
            "disruptions / control successes",
        ],
        [
            "p_star",
            estimate("analysis.p_star", report.p_star),
            _credible("p_star", post.p_star, prior_only="p_star" in prior),
            "break-even p = d/(r+d)",
        ],
        ["net", estimate("analysis.net", report.net, "+.3f"), _credible("net", post.net, "+.3f"), "p*r - (1-p)*d"],
        ["d/r", estimate("analysis.d_over_r", report.d_over_r), "", "above 1: prefer best-of-N selection"],
    ]
    rule = report.point_rule_intervene
    paper = (
        "undefined (p_star is undefined)"
        if rule is None
        else ("p > p_star: intervene" if rule else "p <= p_star: do not intervene")
    )
    return (
        "<h2>Failure rate p against the break-even rate p_star</h2>"
        + figure(figures, "estimates", "p and p_star with credible intervals")
        + table(["quantity", "estimate", f"{pct} credible interval", "meaning"], rows)
        + f'<p class="note">The paper\'s rule on point estimates says {escape(paper)}. The decision above uses '
        "the interval for net instead, which also says how sure we are.</p>"
    )


def evidence(report: PilotReport) -> str:
    power = report.power
    rows = [
        [f"net, {report.level:.0%} {escape(report.net_interval.method)} interval", net_interval(report.net_interval)],
        ["McNemar exact p (two-sided)", number("analysis.mcnemar_p", report.mcnemar.pvalue, ".4f")],
        ["McNemar mid-p (two-sided)", number("analysis.mcnemar_midp", report.mcnemar.midp, ".4f")],
        [
            "P(net > 0 | data), Dirichlet(1,1,1,1)",
            number("analysis.prob_net_positive", report.posterior.prob_net_positive),
        ],
        ["discordant rate", estimate("analysis.discordant_rate", power.discordant_rate)],
        [
            f"minimum detectable |net| ({power.power:.0%} power, alpha {power.alpha:g})",
            estimate("analysis.minimum_detectable_effect", power.minimum_detectable_effect),
        ],
        ["tasks needed if the observed net were true", estimate("analysis.tasks_needed", power.tasks_needed, ".0f")],
        ["more tasks needed", estimate("analysis.more_tasks_needed", power.more_tasks_needed, ".0f")],
        ["power computed by", escape(power.method)],
        ["verdict decided by", escape(report.decided_by)],
    ]
    return "<h2>Evidence</h2>" + table(["statistic", "value"], rows)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def over_time(numbers: ReportNumbers, data: ReportData, figures: Mapping[str, bytes]) -> str:
    track = numbers.monitor
    out = "<h2>Net effect over time</h2>" + figure(figures, "net_over_time", "net effect over time with its band")
    out += (
        f'<p class="note">The band is the anytime-valid {track.level:.0%} confidence sequence of the guard\'s '
        "monitor: the nets its two e-processes have not rejected, so it may be looked at after every pair without "
        "inflating the error rate, and it leaves zero exactly at the pair where the monitor proves harm or benefit. "
        f"Now: {interval('monitor_final.0', 'monitor_final.1', track.low[-1], track.high[-1], '+.3f')}.</p>"
    )
    for name, at in (("Harm", track.harm_proven_at), ("Benefit", track.benefit_proven_at)):
        if at is not None:
            out += f'<p class="note">{name} proven by the monitor after {at} pairs.</p>'
    if data.store is None:
        return out + nodata("Lifecycle transitions: not in a pairs file (build the report from the store).")
    if not data.store.transitions:
        return out + nodata("No lifecycle transitions recorded: the guard is still in its first state.")
    rows = [
        [
            escape(_when(t.at)),
            f"{escape(t.from_state.value)} &rarr; {escape(t.to_state.value)}",
            stored(t.actor),
            stored(t.evidence.get("pairs", "")),
            stored(t.reason),
        ]
        for t in data.store.transitions
    ]
    return out + table(["when", "transition", "by", "after pairs", "reason"], rows)


def _group_rows(groups: Sequence[Group]) -> list[list[str]]:
    return [
        [
            stored(g.label),
            f"{g.counts.n}",
            f"{g.counts.n01}",
            f"{g.counts.n10}",
            escape(formatted(g.counts.r.value, ".3f")),
            escape(formatted(g.counts.d.value, ".3f")),
            escape(formatted(g.counts.net.value, "+.3f")),
        ]
        for g in groups
    ]


_GROUP_HEAD = ["", "pairs", "recoveries", "disruptions", "r", "d", "net within"]


def by_step(numbers: ReportNumbers, data: ReportData, figures: Mapping[str, bytes]) -> str:
    out = "<h2>r and d by step of the first flag</h2>"
    if not numbers.by_step:
        why = "a pairs file has no steps" if data.store is None else "no flagged pair with a recorded step"
        return out + nodata(f"No data: {why}.")
    out += figure(figures, "by_step", "r and d by step of first flag") + table(
        _GROUP_HEAD, _group_rows(numbers.by_step)
    )
    best = numbers.min_step
    if best is not None:
        if best.net_kept <= 0:
            text = (
                "No cut-off by step of first flag makes the observed net positive: the best, acting only from step "
                f"{best.value} on, gives net {best.net_kept:+.3f}. Waiting for a later step does not rescue "
                "intervening here."
            )
        elif best.value == best.earliest:
            text = (
                f"No later cut-off raises the observed net: acting from the earliest flagged step, {best.value}, "
                f"gives the highest point estimate (net {best.net_all:+.3f})."
            )
        else:
            text = (
                f"The data support <b>min_step = {number('min_step', best.value, '.0f')}</b>: acting only from step "
                f"{best.value} on would have given net {best.net_kept:+.3f} instead of {best.net_all:+.3f} "
                "(a point estimate: a run first flagged earlier may be flagged again later)."
            )
        out += f'<p class="note">{text}</p>'
    return out


def by_band(numbers: ReportNumbers, data: ReportData, figures: Mapping[str, bytes]) -> str:
    out = "<h2>r and d by critic score band</h2>"
    if not numbers.by_band:
        why = "a pairs file has no critic scores" if data.store is None else "no flagged pair with a recorded score"
        return out + nodata(f"No data: {why}.")
    return (
        out
        + figure(figures, "by_band", "r and d by critic score band")
        + table(["p_fail at the fork", *_GROUP_HEAD[1:]], _group_rows(numbers.by_band))
        + '<p class="note">If r rises with the score while d stays low, a higher tau keeps the recoveries and '
        "drops the disruptions.</p>"
    )


def quality(numbers: ReportNumbers, figures: Mapping[str, bytes]) -> str:
    def rows(quality: CriticQuality) -> list[list[str]]:
        net = estimate("analysis.net", numbers.analysis.net, "+.3f")
        return [
            ["AUROC (step scores against the run's outcome)", number("auroc", quality.auroc), "net effect", net],
            ["ECE", number("ece", quality.ece), "labeled verdicts", f"{quality.n} ({quality.n_failed} in failed runs)"],
        ]

    return quality_section(
        numbers.quality,
        numbers.quality_note or "No critic scores.",
        ["critic", "", "intervention", ""],
        rows,
        "every run with an outcome counts, production runs and shadow branches. Accuracy is not enough: a critic "
        "that ranks failing runs well (high AUROC) can still harm when its interventions break runs that would have "
        "succeeded. Net effect is what counts.",
        figures,
    )


def aa_noise(store: StoreExtras | None, report: PilotReport) -> str:
    out = "<h2>A/A noise</h2>"
    if store is None:
        return out + nodata("Not in a pairs file (build the report from the store).")
    if store.aa_pairs == 0:
        return out + nodata("No A/A pairs recorded (set aa_fraction to measure rerun noise).")
    rate = store.aa_discordant / store.aa_pairs
    ab = report.power.discordant_rate.value
    return out + (
        f'<p class="note">{store.aa_pairs} A/A pairs (two runs of the same arm), {store.aa_discordant} disagree: '
        f"rerun noise flips {rate:.1%} of tasks, against {percent(ab)} discordant A/B pairs. Flips at the noise rate "
        "are not caused by the intervention.</p>"
    )


def incomplete(store: StoreExtras | None) -> str:
    out = "<h2>Incomplete shadow branches</h2>"
    if store is None:
        return out + nodata("Not in a pairs file (build the report from the store).")
    waiting = (
        f'<p class="note">{store.open_pairs} pairs are still open (waiting for an outcome; not in any number '
        "above).</p>"
        if store.open_pairs
        else ""
    )
    if not store.incomplete_reasons:
        return out + nodata("None: every shadow branch finished.") + waiting
    rows = [[stored(reason), str(count)] for reason, count in Counter(store.incomplete_reasons).most_common()]
    return (
        out + f'<p class="note">{len(store.incomplete_reasons)} pairs were excluded because a branch could not finish '
        "(they are not in any number above):</p>" + table(["reason", "pairs"], rows) + waiting
    )
