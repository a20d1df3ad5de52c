"""The report as one self-contained HTML page: inline CSS, figures as base64 PNG, no script but the data block.

Order matters: the decision and how certain it is come first, in words a reader who never saw the paper can act
on; the evidence follows, section by section, and a section without data says why instead of disappearing.

Every number shown is wrapped as ``<span data-key="...">`` with the key it has in the embedded JSON block
(``<script type="application/json" id="critic-guard-report">``, written from the same object), so a test can check
the page against ``critic-guard analyze --json`` number by number. The formats are those of the terminal report.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape

from critic_guard.labels import label_of
from critic_guard.report.data import ReportData, StoreExtras
from critic_guard.report.numbers import Group, Recommendation, ReportNumbers
from critic_guard.safe_text import visible
from critic_guard.stats import Decision, Estimate, Interval, PilotReport
from critic_guard.stats.report import EXACT_TEST

__all__ = ["AUROC_MEANING", "DATA_ELEMENT_ID", "render_html"]

DATA_ELEMENT_ID = "critic-guard-report"

AUROC_MEANING = (
    "each judged step's p_fail against whether its run failed in the end: a right step in a run that later fails "
    "counts as a failure, so this is lower than the critic's accuracy at telling a wrong step from a right one"
)
"""What the reports' AUROC measures (:func:`critic_guard.calibration.labeled_verdicts`), said next to it."""

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d1f23}
main{max-width:980px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:20px;margin:0 0 4px} .source{color:#555;font-size:13px;margin:0 0 14px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dbe0;padding-bottom:4px}
.decision{border-radius:10px;padding:18px 22px;color:#fff}
.decision.helps{background:#1b7837} .decision.harms{background:#b2182b} .decision.inconclusive{background:#9a6700}
.decision .headline{font-size:30px;font-weight:700;margin:0}
.decision .why{font-size:17px;margin:6px 0 12px}
.certainty{display:flex;flex-wrap:wrap;gap:10px;margin:0;padding:0;list-style:none}
.certainty li{background:rgba(255,255,255,.16);border-radius:6px;padding:6px 10px;font-size:14px}
.certainty b{display:block;font-size:18px}
.next{font-size:16px;margin:12px 0 0;font-weight:600}
table{border-collapse:collapse;font-size:14px;margin:6px 0;background:#fff}
th,td{border:1px solid #d8dbe0;padding:4px 10px;text-align:left} td:has(.num){text-align:right}
th{background:#eef0f3}
.num{font-variant-numeric:tabular-nums}
.nodata{color:#666;font-style:italic}
.prior-only{color:#8a5a00;font-size:.85em}
.note{color:#444;font-size:14px;max-width:900px}
img{max-width:100%;background:#fff;border:1px solid #d8dbe0;border-radius:4px;margin:6px 0}
footer{color:#666;font-size:12px;margin-top:32px}
"""

_HEADLINE = {
    Decision.HELPS: "Deploy the intervention",
    Decision.HARMS: "Do not deploy the intervention",
    Decision.INCONCLUSIVE: "Do not deploy yet",
}


def _stored(value: object) -> str:
    """A stored string (guard key, reason, actor, label) as HTML text: escaped, control characters shown."""
    return escape(visible(value))


def _fmt(value: float | None, fmt: str) -> str:
    return "undefined" if value is None else format(value, fmt)


def _n(key: str, value: float | None, fmt: str = ".3f") -> str:
    """One number as shown, tagged with its JSON key."""
    return f'<span class="num" data-key="{escape(key)}">{escape(_fmt(value, fmt))}</span>'


def _est(key: str, estimate: Estimate, fmt: str = ".3f") -> str:
    return _n(key, estimate.value, fmt)


def _ci(low_key: str, high_key: str, low: float, high: float, fmt: str = ".3f") -> str:
    return f"[{_n(low_key, low, fmt)}, {_n(high_key, high, fmt)}]"


def _net_ci(interval: Interval) -> str:
    return _ci("analysis.net_ci_low", "analysis.net_ci_high", interval.low, interval.high, "+.3f")


def _credible(name: str, interval: Interval, fmt: str = ".3f", prior_only: bool = False) -> str:
    """A credible interval; ``prior_only`` marks one whose estimate the data leave undefined (its interval is the
    prior's, or leans on it: ``analysis.credible_prior_only``)."""
    key = f"analysis.credible_intervals.{name}"
    shown = _ci(f"{key}.0", f"{key}.1", interval.low, interval.high, fmt)
    return f'{shown} <span class="prior-only">prior only</span>' if prior_only else shown


def _pct(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.1%}"


def _nodata(text: str) -> str:
    return f'<p class="nodata">{escape(text)}</p>'


def _figure(figures: Mapping[str, bytes], name: str, alt: str) -> str:
    png = figures.get(name)
    if png is None:
        return ""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table whose cells are already HTML (escaped where they hold text)."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


# ---- the first screen ------------------------------------------------------------------------------------------


def _why(report: PilotReport) -> str:
    pct = f"{report.level:.0%}"
    if report.verdict is Decision.HELPS:
        return (
            f"Intervening raises the success rate; the {pct} interval for the change lies above zero and the exact "
            "McNemar test agrees."
        )
    if report.verdict is Decision.HARMS:
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
            f"{_est('analysis.more_tasks_needed', power.more_tasks_needed, '.0f')} more tasks "
            f"({_est('analysis.tasks_needed', power.tasks_needed, '.0f')} in all) to settle it, if the effect seen so "
            "far is the true one."
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
        ("change in success rate (net)", _est("analysis.net", report.net, "+.3f")),
        (f"{pct} interval for net", _net_ci(report.net_interval)),
        ("P(intervening helps)", _n("analysis.prob_net_positive", report.posterior.prob_net_positive)),
        ("McNemar exact p", _n("analysis.mcnemar_p", report.mcnemar.pvalue, ".4f")),
        ("pairs", _n("analysis.n", report.counts.n, ".0f")),
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
        f'<p class="why">Success rate without intervention {_pct(control)}, with intervention {_pct(treatment)}.'
        f"{state}</p>"
    )
    return (
        f'<section class="decision {report.verdict.value}" id="decision" data-verdict="{report.verdict.value}">'
        f'<p class="headline">{escape(_HEADLINE[report.verdict])}</p>'
        f'<p class="why">{escape(_why(report))}</p>{rates}'
        f'<ul class="certainty">{certainty}</ul>{_next_step(numbers)}</section>'
    )


# ---- the evidence ----------------------------------------------------------------------------------------------


def _cells(report: PilotReport) -> str:
    c = report.counts
    rows = [
        [
            "control fails",
            f"{_n('analysis.n00', c.n00, '.0f')} both fail",
            f"{_n('analysis.n01', c.n01, '.0f')} recoveries",
        ],
        [
            "control succeeds",
            f"{_n('analysis.n10', c.n10, '.0f')} disruptions",
            f"{_n('analysis.n11', c.n11, '.0f')} both succeed",
        ],
    ]
    note = (
        '<p class="note">Only the discordant pairs (recoveries and disruptions) say which arm is better; the '
        "others show how often intervening changes nothing.</p>"
    )
    return "<h2>Pairs: the 2x2 table</h2>" + _table(["", "treatment fails", "treatment succeeds"], rows) + note


def _estimates(report: PilotReport, figures: Mapping[str, bytes]) -> str:
    post = report.posterior
    pct = f"{report.level:.0%}"
    prior = report.prior_only()
    rows = [
        ["p", _est("analysis.p", report.p), _credible("p", post.p), "control failure rate"],
        [
            "r",
            _est("analysis.r", report.r),
            _credible("r", post.r, prior_only="r" in prior),
            "recoveries / control failures",
        ],
        [
            "d",
            _est("analysis.d", report.d),
            _credible("d", post.d, prior_only="d" in prior),
            "disruptions / control successes",
        ],
        [
            "p_star",
            _est("analysis.p_star", report.p_star),
            _credible("p_star", post.p_star, prior_only="p_star" in prior),
            "break-even p = d/(r+d)",
        ],
        ["net", _est("analysis.net", report.net, "+.3f"), _credible("net", post.net, "+.3f"), "p*r - (1-p)*d"],
        ["d/r", _est("analysis.d_over_r", report.d_over_r), "", "above 1: prefer best-of-N selection"],
    ]
    rule = report.point_rule_intervene
    paper = (
        "undefined (p_star is undefined)"
        if rule is None
        else ("p > p_star: intervene" if rule else "p <= p_star: do not intervene")
    )
    return (
        "<h2>Failure rate p against the break-even rate p_star</h2>"
        + _figure(figures, "estimates", "p and p_star with credible intervals")
        + _table(["quantity", "estimate", f"{pct} credible interval", "meaning"], rows)
        + f'<p class="note">The paper\'s rule on point estimates says {escape(paper)}. The decision above uses '
        "the interval for net instead, which also says how sure we are.</p>"
    )


def _evidence(report: PilotReport) -> str:
    power = report.power
    rows = [
        [f"net, {report.level:.0%} {escape(report.net_interval.method)} interval", _net_ci(report.net_interval)],
        ["McNemar exact p (two-sided)", _n("analysis.mcnemar_p", report.mcnemar.pvalue, ".4f")],
        ["McNemar mid-p (two-sided)", _n("analysis.mcnemar_midp", report.mcnemar.midp, ".4f")],
        ["P(net > 0 | data), Dirichlet(1,1,1,1)", _n("analysis.prob_net_positive", report.posterior.prob_net_positive)],
        ["discordant rate", _est("analysis.discordant_rate", power.discordant_rate)],
        [
            f"minimum detectable |net| ({power.power:.0%} power, alpha {power.alpha:g})",
            _est("analysis.minimum_detectable_effect", power.minimum_detectable_effect),
        ],
        ["tasks needed if the observed net were true", _est("analysis.tasks_needed", power.tasks_needed, ".0f")],
        ["more tasks needed", _est("analysis.more_tasks_needed", power.more_tasks_needed, ".0f")],
        ["power computed by", escape(power.method)],
        ["verdict decided by", escape(report.decided_by)],
    ]
    return "<h2>Evidence</h2>" + _table(["statistic", "value"], rows)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _over_time(numbers: ReportNumbers, data: ReportData, figures: Mapping[str, bytes]) -> str:
    track = numbers.monitor
    out = "<h2>Net effect over time</h2>" + _figure(figures, "net_over_time", "net effect over time with its band")
    out += (
        f'<p class="note">The band is the anytime-valid {track.level:.0%} confidence sequence of the guard\'s '
        "monitor: the nets its two e-processes have not rejected, so it may be looked at after every pair without "
        "inflating the error rate, and it leaves zero exactly at the pair where the monitor proves harm or benefit. "
        f"Now: {_ci('monitor_final.0', 'monitor_final.1', track.low[-1], track.high[-1], '+.3f')}.</p>"
    )
    for name, at in (("Harm", track.harm_proven_at), ("Benefit", track.benefit_proven_at)):
        if at is not None:
            out += f'<p class="note">{name} proven by the monitor after {at} pairs.</p>'
    if data.store is None:
        return out + _nodata("Lifecycle transitions: not in a pairs file (build the report from the store).")
    if not data.store.transitions:
        return out + _nodata("No lifecycle transitions recorded: the guard is still in its first state.")
    rows = [
        [
            escape(_when(t.at)),
            f"{escape(t.from_state.value)} &rarr; {escape(t.to_state.value)}",
            _stored(t.actor),
            _stored(t.evidence.get("pairs", "")),
            _stored(t.reason),
        ]
        for t in data.store.transitions
    ]
    return out + _table(["when", "transition", "by", "after pairs", "reason"], rows)


def _group_rows(groups: Sequence[Group]) -> list[list[str]]:
    return [
        [
            _stored(g.label),
            f"{g.counts.n}",
            f"{g.counts.n01}",
            f"{g.counts.n10}",
            escape(_fmt(g.counts.r.value, ".3f")),
            escape(_fmt(g.counts.d.value, ".3f")),
            escape(_fmt(g.counts.net.value, "+.3f")),
        ]
        for g in groups
    ]


_GROUP_HEAD = ["", "pairs", "recoveries", "disruptions", "r", "d", "net within"]


def _by_step(numbers: ReportNumbers, data: ReportData, figures: Mapping[str, bytes]) -> str:
    out = "<h2>r and d by step of the first flag</h2>"
    if not numbers.by_step:
        why = "a pairs file has no steps" if data.store is None else "no flagged pair with a recorded step"
        return out + _nodata(f"No data: {why}.")
    out += _figure(figures, "by_step", "r and d by step of first flag") + _table(
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
                f"The data support <b>min_step = {_n('min_step', best.value, '.0f')}</b>: acting only from step "
                f"{best.value} on would have given net {best.net_kept:+.3f} instead of {best.net_all:+.3f} "
                "(a point estimate: a run first flagged earlier may be flagged again later)."
            )
        out += f'<p class="note">{text}</p>'
    return out


def _by_band(numbers: ReportNumbers, data: ReportData, figures: Mapping[str, bytes]) -> str:
    out = "<h2>r and d by critic score band</h2>"
    if not numbers.by_band:
        why = "a pairs file has no critic scores" if data.store is None else "no flagged pair with a recorded score"
        return out + _nodata(f"No data: {why}.")
    return (
        out
        + _figure(figures, "by_band", "r and d by critic score band")
        + _table(["p_fail at the fork", *_GROUP_HEAD[1:]], _group_rows(numbers.by_band))
        + '<p class="note">If r rises with the score while d stays low, a higher tau keeps the recoveries and '
        "drops the disruptions.</p>"
    )


def _quality(numbers: ReportNumbers, figures: Mapping[str, bytes]) -> str:
    out = "<h2>Critic quality</h2>"
    quality = numbers.quality
    if quality is None:
        return out + _nodata(numbers.quality_note or "No critic scores.")
    rows = [
        [
            "AUROC (step scores against the run's outcome)",
            _n("auroc", quality.auroc),
            "net effect",
            _est("analysis.net", numbers.analysis.net, "+.3f"),
        ],
        ["ECE", _n("ece", quality.ece), "labeled verdicts", f"{quality.n} ({quality.n_failed} in failed runs)"],
    ]
    return (
        out
        + _table(["critic", "", "intervention", ""], rows)
        + _figure(figures, "critic_quality", "ROC curve and reliability diagram")
        + f'<p class="note">AUROC here is {AUROC_MEANING}; every run with an outcome counts, production runs and '
        "shadow branches. Accuracy is not enough: a critic that ranks failing runs well (high AUROC) can still "
        "harm when its interventions break runs that would have succeeded. Net effect is what counts.</p>"
    )


def _aa(store: StoreExtras | None, report: PilotReport) -> str:
    out = "<h2>A/A noise</h2>"
    if store is None:
        return out + _nodata("Not in a pairs file (build the report from the store).")
    if store.aa_pairs == 0:
        return out + _nodata("No A/A pairs recorded (set aa_fraction to measure rerun noise).")
    rate = store.aa_discordant / store.aa_pairs
    ab = report.power.discordant_rate.value
    return out + (
        f'<p class="note">{store.aa_pairs} A/A pairs (two runs of the same arm), {store.aa_discordant} disagree: '
        f"rerun noise flips {rate:.1%} of tasks, against {_pct(ab)} discordant A/B pairs. Flips at the noise rate "
        "are not caused by the intervention.</p>"
    )


def _incomplete(store: StoreExtras | None) -> str:
    out = "<h2>Incomplete shadow branches</h2>"
    if store is None:
        return out + _nodata("Not in a pairs file (build the report from the store).")
    waiting = (
        f'<p class="note">{store.open_pairs} pairs are still open (waiting for an outcome; not in any number '
        "above).</p>"
        if store.open_pairs
        else ""
    )
    if not store.incomplete_reasons:
        return out + _nodata("None: every shadow branch finished.") + waiting
    rows = [[_stored(reason), str(count)] for reason, count in Counter(store.incomplete_reasons).most_common()]
    return (
        out + f'<p class="note">{len(store.incomplete_reasons)} pairs were excluded because a branch could not finish '
        "(they are not in any number above):</p>" + _table(["reason", "pairs"], rows) + waiting
    )


def _recommendation(numbers: ReportNumbers) -> str:
    report = numbers.analysis
    items = [_next_step(numbers)]
    if report.prefer_selection and numbers.recommendation is not Recommendation.PREFER_SELECTION:
        items.append(
            f'<p class="note">d/r = {_est("analysis.d_over_r", report.d_over_r)} &gt; 1: a run that would succeed is '
            "more likely to be broken than a failing run to be rescued; the paper advises best-of-N selection over "
            "mid-run intervention.</p>"
        )
    undefined = report.undefined()
    if undefined:
        listed = "".join(f"<li>{escape(label_of(k))}: {escape(v)}</li>" for k, v in undefined.items())
        items.append(f'<p class="note">Undefined numbers:</p><ul class="note">{listed}</ul>')
    return "<h2>Recommendation</h2>" + "".join(items)


def _data_block(numbers: ReportNumbers) -> str:
    text = json.dumps(numbers.to_dict(), sort_keys=True, allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{DATA_ELEMENT_ID}">{text}</script>'


def render_html(data: ReportData, numbers: ReportNumbers, figures: Mapping[str, bytes]) -> str:
    """The whole page."""
    key = f" &middot; guard key <code>{_stored(data.guard_key)}</code>" if data.guard_key else ""
    body = "".join(
        [
            "<h1>critic-guard pilot report</h1>",
            f'<p class="source">{_stored(data.source)}{key}</p>',
            _decision(numbers, data),
            _cells(numbers.analysis),
            _estimates(numbers.analysis, figures),
            _evidence(numbers.analysis),
            _over_time(numbers, data, figures),
            _by_step(numbers, data, figures),
            _by_band(numbers, data, figures),
            _quality(numbers, figures),
            _aa(data.store, numbers.analysis),
            _incomplete(data.store),
            _recommendation(numbers),
            "<footer>Made by critic-guard report. What each section means and how to act on it: docs/report.md "
            "in the critic-guard repository.</footer>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>critic-guard report: {escape(_HEADLINE[numbers.analysis.verdict])}</title>"
        f"<style>{_CSS}</style></head><body><main>{body}</main>{_data_block(numbers)}</body></html>\n"
    )
