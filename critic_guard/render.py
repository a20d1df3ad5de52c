"""Human-readable rendering of statistics results with rich (kept apart from the CLI so other commands reuse it)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from critic_guard.labels import label_of
from critic_guard.stats.counts import Estimate
from critic_guard.stats.intervals import Interval
from critic_guard.stats.report import EXACT_TEST, PilotConclusion, PilotReport

_VERDICT_STYLE = {
    PilotConclusion.HELPS: "bold green",
    PilotConclusion.HARMS: "bold red",
    PilotConclusion.INCONCLUSIVE: "bold yellow",
}


def _num(value: float, signed: bool = False) -> str:
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _estimate(e: Estimate, signed: bool = False) -> str:
    return "undefined" if e.value is None else _num(e.value, signed)


def _interval(i: Interval, signed: bool = False) -> str:
    return f"[{_num(i.low, signed)}, {_num(i.high, signed)}]"


def _cells_table(report: PilotReport) -> Table:
    c = report.counts
    table = Table(title=f"Pairs (n = {c.n})", title_justify="left")
    table.add_column("")
    table.add_column("treatment fails", justify="right")
    table.add_column("treatment succeeds", justify="right")
    table.add_row("control fails", f"n00 = {c.n00}", f"n01 = {c.n01}  (recoveries)")
    table.add_row("control succeeds", f"n10 = {c.n10}  (disruptions)", f"n11 = {c.n11}")
    return table


def _estimates_table(report: PilotReport) -> Table:
    post = report.posterior
    pct = f"{report.level:.0%}"
    table = Table(title="Estimates", title_justify="left")
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    table.add_column(f"{pct} credible (posterior)", justify="right")
    table.add_column("meaning")
    prior_only = report.prior_only()

    def credible(name: str, interval: Interval, signed: bool = False) -> str:
        text = _interval(interval, signed)
        return f"{text} prior only" if name in prior_only else text

    table.add_row("p", _estimate(report.p), credible("p", post.p), "control failure rate")
    table.add_row("r", _estimate(report.r), credible("r", post.r), "recoveries / control failures")
    table.add_row("d", _estimate(report.d), credible("d", post.d), "disruptions / control successes")
    table.add_row("p_star", _estimate(report.p_star), credible("p_star", post.p_star), "break-even p: d/(r+d)")
    p, p_star = report.p.value, report.p_star.value
    gap = "undefined" if p is None or p_star is None else _num(p - p_star, signed=True)
    table.add_row("p - p_star", gap, credible("p_minus_p_star", post.p_minus_p_star, True), "> 0 iff intervening helps")
    table.add_row("net", _estimate(report.net, True), _interval(post.net, True), "change in success rate")
    table.add_row("d/r", _estimate(report.d_over_r), "", "disruption rate / recovery rate")
    return table


def _evidence_table(report: PilotReport) -> Table:
    ci, power = report.net_interval, report.power
    pct = f"{report.level:.0%}"
    table = Table(title="Evidence", title_justify="left")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row(f"net, {pct} {ci.method} interval", _interval(ci, signed=True))
    table.add_row("McNemar exact p (two-sided)", f"{report.mcnemar.pvalue:.4f}")
    table.add_row("McNemar mid-p (two-sided)", f"{report.mcnemar.midp:.4f}")
    table.add_row("P(net > 0 | data), Dirichlet(1,1,1,1)", f"{report.posterior.prob_net_positive:.3f}")
    table.add_row("discordant rate", _estimate(power.discordant_rate))
    table.add_row(
        f"minimum detectable |net| ({power.power:.0%} power, alpha {power.alpha:g})",
        _estimate(power.minimum_detectable_effect),
    )
    needed, more = power.tasks_needed.value, power.more_tasks_needed.value
    table.add_row(
        "tasks needed if the observed net were true",
        "undefined" if needed is None or more is None else f"{needed:.0f} ({more:.0f} more)",
    )
    table.add_row("power computed by", power.method)
    table.add_row("verdict decided by", report.decided_by)
    return table


def _verdict_text(report: PilotReport) -> Text:
    ci = report.net_interval
    pct = f"{report.level:.0%}"
    text = Text("Verdict: ")
    text.append(report.verdict.value.upper(), style=_VERDICT_STYLE[report.verdict])
    alpha = f"{1 - report.level:.2g}"
    p_exact = f"exact McNemar p = {report.mcnemar.pvalue:.4f}"
    if report.verdict is PilotConclusion.HELPS:
        text.append(
            f"\nThe {pct} interval for net lies above 0 and the {p_exact} <= {alpha}: intervening raises the "
            "success rate."
        )
    elif report.verdict is PilotConclusion.HARMS:
        text.append(
            f"\nThe {pct} interval for net lies below 0 and the {p_exact} <= {alpha}: intervening lowers the "
            "success rate."
        )
    elif report.decided_by == EXACT_TEST:
        text.append(
            f"\nThe {pct} interval for net, {_interval(ci, signed=True)}, excludes 0, but the {p_exact} > {alpha}: "
            f"with {report.mcnemar.discordant} discordant pairs the interval's approximation cannot be trusted, so "
            "this pilot cannot tell whether intervening helps or harms."
        )
    else:
        text.append(
            f"\nThe {pct} interval for net, {_interval(ci, signed=True)}, contains 0: this pilot cannot tell "
            "whether intervening helps or harms."
        )
    rule = report.point_rule_intervene
    if rule is not None:
        side, advice = ("p > p_star", "intervene") if rule else ("p <= p_star", "not intervene")
        tail = (
            "the interval agrees."
            if report.verdict is not PilotConclusion.INCONCLUSIVE
            else "the data do not support that reading yet."
        )
        text.append(f"\nThe paper's rule on point estimates ({side}) says {advice}; {tail}")
    if report.prefer_selection:
        text.append(
            f"\nd/r = {_estimate(report.d_over_r)} > 1: a run that would succeed is more likely to be broken than "
            "a failing run is to be rescued; the paper advises selection (best-of-N) over mid-run intervention."
        )
    return text


def _undefined_text(report: PilotReport) -> Text | None:
    reasons = report.undefined()
    if not reasons:
        return None
    lines = [f"{label_of(name)}: {reason}" for name, reason in reasons.items()]
    return Text("Undefined:\n" + "\n".join(f"  {line}" for line in lines), style="dim")


def render_report(report: PilotReport) -> RenderableType:
    """The full human report of a fixed pilot: cells, estimates, evidence, verdict, and why anything is missing."""
    parts: list[RenderableType] = [
        _cells_table(report),
        _estimates_table(report),
        _evidence_table(report),
        _verdict_text(report),
    ]
    undefined = _undefined_text(report)
    if undefined is not None:
        parts.append(undefined)
    return Group(*parts)


def render_sample_size(effect: float, discordant: float, alpha: float, power: float, tasks: int, method: str) -> Text:
    """One-line answer of the sample-size calculator, naming how it was computed."""
    return Text(
        f"{tasks} tasks detect net = {effect:+g} with discordant rate {discordant:g} "
        f"at two-sided alpha {alpha:g} with {power:.0%} power ({method})."
    )


def render_detectable(n: int, discordant: float, alpha: float, power: float, effect: Estimate, method: str) -> Text:
    """One-line answer of the minimum-detectable-effect calculator, naming how it was computed."""
    if effect.value is None:
        return Text(f"No detectable effect: {effect.reason} ({method}).")
    return Text(
        f"{n} tasks with discordant rate {discordant:g} detect |net| >= {effect.value:.3f} "
        f"at two-sided alpha {alpha:g} with {power:.0%} power ({method})."
    )
