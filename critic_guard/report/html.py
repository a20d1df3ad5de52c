"""The pilot report as one self-contained HTML page: inline CSS, figures as base64 PNG, no script but the data block.

Order matters: the decision and how certain it is come first, in words a reader who never saw the paper can act
on; the evidence follows, section by section (:mod:`critic_guard.report.pilot_sections`), and a section without
data says why instead of disappearing.

Every number shown is tagged with the key it has in the embedded JSON block, written from the same object
(:mod:`critic_guard.report.page`), so a test can check the page against ``critic-guard analyze --json`` number by
number. The formats are those of the terminal report.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from critic_guard.labels import label_of
from critic_guard.report import pilot_sections as sections
from critic_guard.report.data import ReportData
from critic_guard.report.numbers import Recommendation, ReportNumbers
from critic_guard.report.page import (
    AUROC_MEANING,
    CSS,
    DATA_ELEMENT_ID,
    document,
    estimate,
    net_interval,
    number,
    percent,
    stored,
)
from critic_guard.stats import PilotConclusion, PilotReport
from critic_guard.stats.report import EXACT_TEST

__all__ = ["AUROC_MEANING", "DATA_ELEMENT_ID", "render_html"]

_HEADLINE = {
    PilotConclusion.HELPS: "Deploy the intervention",
    PilotConclusion.HARMS: "Do not deploy the intervention",
    PilotConclusion.INCONCLUSIVE: "Do not deploy yet",
}


# ---- the first screen (the evidence sections are in pilot_sections.py; the recommendation closes the page) -----


def _why(report: PilotReport) -> str:
    pct = f"{report.level:.0%}"
    if report.verdict is PilotConclusion.HELPS:
        return (
            f"Intervening raises the success rate; the {pct} interval for the change lies above zero and the exact "
            "McNemar test agrees."
        )
    if report.verdict is PilotConclusion.HARMS:
        return (
            f"Intervening lowers the success rate; the {pct} interval for the change lies below zero and the exact "
            "McNemar test agrees."
        )
    if report.decided_by == EXACT_TEST:
        return (
            f"This pilot cannot tell whether intervening helps or harms: the {pct} interval for the change in "
            f"success rate excludes zero, but the exact McNemar test does not agree (p = "
            f"{report.mcnemar.pvalue:.4f} > {1 - report.level:.2g}) with only {report.mcnemar.discordant} "
            "discordant pairs."
        )
    return (
        f"This pilot cannot tell whether intervening helps or harms: the {pct} interval for the change in "
        "success rate contains zero."
    )


def _next_step(numbers: ReportNumbers) -> str:
    report = numbers.analysis
    power = report.power
    rec = numbers.recommendation
    if rec is Recommendation.INTERVENE:
        text = "Recommendation: intervene (keep the monitor on: it disables the guard if harm shows up later)."
    elif rec is Recommendation.RUN_MORE_TASKS:
        text = (
            "Recommendation: keep serving without intervention and run "
            f"{estimate('analysis.more_tasks_needed', power.more_tasks_needed, '.0f')} more tasks "
            f"({estimate('analysis.tasks_needed', power.tasks_needed, '.0f')} in all) to settle it, if the effect "
            "seen so far is the true one."
        )
    elif rec is Recommendation.PREFER_SELECTION:
        text = (
            "Recommendation: do not intervene mid-run; prefer best-of-N selection (a run that would succeed is "
            "likelier to be broken than a failing run to be rescued: d > r)."
        )
    else:
        text = "Recommendation: do not intervene."
    return f'<p class="next" data-recommendation="{rec.value}">{text}</p>'


def _decision(numbers: ReportNumbers, data: ReportData) -> str:
    report = numbers.analysis
    p, net = report.p.value, report.net.value
    control = None if p is None else 1.0 - p
    treatment = None if control is None or net is None else control + net
    pct = f"{report.level:.0%}"
    items = [
        ("change in success rate (net)", estimate("analysis.net", report.net, "+.3f")),
        (f"{pct} interval for net", net_interval(report.net_interval)),
        ("P(intervening helps)", number("analysis.prob_net_positive", report.posterior.prob_net_positive)),
        ("McNemar exact p", number("analysis.mcnemar_p", report.mcnemar.pvalue, ".4f")),
        ("pairs", number("analysis.n", report.counts.n, ".0f")),
    ]
    certainty = "".join(f"<li>{escape(label)}<b>{value}</b></li>" for label, value in items)
    state = ""
    if data.store is not None and data.store.state is not None:
        state = f" The guard's lifecycle state in the store is <b>{escape(data.store.state.value)}</b>."
    if data.store is not None and data.store.inconclusive_at is not None:
        state += (
            f" Its pilot ended <b>inconclusive</b>: the budget ran out after {data.store.inconclusive_at} pairs "
            "without a proof either way (not evidence of harm)."
        )
    rates = (
        f'<p class="why">Success rate without intervention {percent(control)}, with intervention {percent(treatment)}.'
        f"{state}</p>"
    )
    return (
        f'<section class="decision {report.verdict.value}" id="decision" data-verdict="{report.verdict.value}">'
        f'<p class="headline">{escape(_HEADLINE[report.verdict])}</p>'
        f'<p class="why">{escape(_why(report))}</p>{rates}'
        f'<ul class="certainty">{certainty}</ul>{_next_step(numbers)}</section>'
    )


def _recommendation(numbers: ReportNumbers) -> str:
    report = numbers.analysis
    items = [_next_step(numbers)]
    if report.prefer_selection and numbers.recommendation is not Recommendation.PREFER_SELECTION:
        items.append(
            f'<p class="note">d/r = {estimate("analysis.d_over_r", report.d_over_r)} &gt; 1: a run that would '
            "succeed is more likely to be broken than a failing run to be rescued; the paper advises best-of-N "
            "selection over mid-run intervention.</p>"
        )
    undefined = report.undefined()
    if undefined:
        listed = "".join(f"<li>{escape(label_of(k))}: {escape(v)}</li>" for k, v in undefined.items())
        items.append(f'<p class="note">Undefined numbers:</p><ul class="note">{listed}</ul>')
    return "<h2>Recommendation</h2>" + "".join(items)


def render_html(data: ReportData, numbers: ReportNumbers, figures: Mapping[str, bytes]) -> str:
    """The whole page."""
    key = f" &middot; guard key <code>{stored(data.guard_key)}</code>" if data.guard_key else ""
    body = "".join(
        [
            "<h1>critic-guard pilot report</h1>",
            f'<p class="source">{stored(data.source)}{key}</p>',
            _decision(numbers, data),
            sections.cells(numbers.analysis),
            sections.estimates(numbers.analysis, figures),
            sections.evidence(numbers.analysis),
            sections.over_time(numbers, data, figures),
            sections.by_step(numbers, data, figures),
            sections.by_band(numbers, data, figures),
            sections.quality(numbers, figures),
            sections.aa_noise(data.store, numbers.analysis),
            sections.incomplete(data.store),
            _recommendation(numbers),
            "<footer>Made by critic-guard report. What each section means and how to act on it: docs/report.md "
            "in the critic-guard repository.</footer>",
        ]
    )
    return document(escape(_HEADLINE[numbers.analysis.verdict]), CSS, body, numbers.to_dict())
