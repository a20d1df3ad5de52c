"""What both report pages share: the page skeleton and style, escaping, tagged numbers, tables and figures.

Why one module: the pilot page (:mod:`critic_guard.report.html`) and the observe page
(:mod:`critic_guard.report.observed_page`) must look alike and be checked alike. Every number shown is wrapped as
``<span data-key="...">`` with the key it has in the embedded JSON block (``<script type="application/json"
id="critic-guard-report">``, written from the same object by :func:`document`), so a test can check a page against
its data number by number (docs/report.md). Stored text (guard keys, reasons, actors, labels) is escaped with its
control characters shown, since it may come from anyone who can write to the store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from critic_guard.calibration import CriticQuality
from critic_guard.safe_text import visible
from critic_guard.stats import Estimate, Interval

__all__ = [
    "AUROC_MEANING",
    "CSS",
    "DATA_ELEMENT_ID",
    "document",
    "estimate",
    "figure",
    "formatted",
    "interval",
    "net_interval",
    "nodata",
    "number",
    "percent",
    "quality_section",
    "stored",
    "table",
]

DATA_ELEMENT_ID = "critic-guard-report"

AUROC_MEANING = (
    "each judged step's p_fail against whether its run failed in the end: a right step in a run that later fails "
    "counts as a failure, so this is lower than the critic's accuracy at telling a wrong step from a right one"
)
"""What the reports' AUROC measures (:func:`critic_guard.calibration.labeled_verdicts`), said next to it."""

CSS = """
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
"""The style of both pages (the observe page adds its own decision colour)."""


def stored(value: object) -> str:
    """A stored string (guard key, reason, actor, label) as HTML text: escaped, control characters shown."""
    return escape(visible(value))


def formatted(value: float | None, fmt: str) -> str:
    """A number as the terminal report prints it; None (a number the data leave undefined) as ``undefined``."""
    return "undefined" if value is None else format(value, fmt)


def number(key: str, value: float | None, fmt: str = ".3f") -> str:
    """One number as shown, tagged with its JSON key."""
    return f'<span class="num" data-key="{escape(key)}">{escape(formatted(value, fmt))}</span>'


def estimate(key: str, value: Estimate, fmt: str = ".3f") -> str:
    return number(key, value.value, fmt)


def interval(low_key: str, high_key: str, low: float, high: float, fmt: str = ".3f") -> str:
    return f"[{number(low_key, low, fmt)}, {number(high_key, high, fmt)}]"


def net_interval(net: Interval) -> str:
    """The pilot's interval for net, tagged as ``critic-guard analyze --json`` names its ends."""
    return interval("analysis.net_ci_low", "analysis.net_ci_high", net.low, net.high, "+.3f")


def percent(value: float | None) -> str:
    """A share as a percentage (untagged: a rate derived from tagged numbers shown nearby)."""
    return "undefined" if value is None else f"{value:.1%}"


def nodata(text: str) -> str:
    """What a section without data shows instead of disappearing: why it is empty."""
    return f'<p class="nodata">{escape(text)}</p>'


def figure(figures: Mapping[str, bytes], name: str, alt: str) -> str:
    """The figure ``name`` inline as a base64 PNG (the page stays one file), or nothing if it was not drawn."""
    png = figures.get(name)
    if png is None:
        return ""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table whose cells are already HTML (escaped where they hold text)."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def quality_section(
    quality: CriticQuality | None,
    missing: str,
    head: Sequence[str],
    rows: Callable[[CriticQuality], Sequence[Sequence[str]]],
    counted: str,
    figures: Mapping[str, bytes],
) -> str:
    """The critic quality section of either page: ``missing`` says why there is none; else the page's ``rows``,
    the ROC and reliability figure and what AUROC measures, followed by ``counted`` (which runs count, and why a
    good AUROC is not the decision)."""
    out = "<h2>Critic quality</h2>"
    if quality is None:
        return out + nodata(missing)
    return (
        out
        + table(head, rows(quality))
        + figure(figures, "critic_quality", "ROC curve and reliability diagram")
        + f'<p class="note">AUROC here is {AUROC_MEANING}; {counted}</p>'
    )


def document(title: str, style: str, body: str, data: Mapping[str, Any]) -> str:
    """The whole page: ``title`` (already HTML), ``style`` (CSS), ``body`` (HTML) and ``data`` as the JSON block
    every tagged number is checked against (``</`` escaped so that no string can end the block early)."""
    text = json.dumps(data, sort_keys=True, allow_nan=False).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>critic-guard report: {title}</title>"
        f"<style>{style}</style></head><body><main>{body}</main>"
        f'<script type="application/json" id="{DATA_ELEMENT_ID}">{text}</script></body></html>\n'
    )
