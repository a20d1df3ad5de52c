"""What ``critic-guard status`` shows: every guard key in a store with its lifecycle state, evidence and last
transition, as rows (for ``--json``) and as rich text for a terminal of any width.

The evidence is :func:`critic_guard.lifecycle.evidence_of`, the same dict a transition records, so the status
page and the transition log never describe the monitor differently. A key that has pairs but no lifecycle record
yet (no pair completed) is shown in ``pilot`` with no evidence.

Pairs not counted are shown beside the counted ones, so a pilot hit by store faults cannot look cleaner than it
was: ``incomplete`` (excluded, with a reason) and ``open`` (still waiting for an outcome: in flight, or left by a
lost write, docs/faults.md).

A key with runs only (a guard in mode ``observe``, or ``on``: verdicts recorded, no pairs, no lifecycle) is shown as
``observed``. Every key with runs also shows what its production runs recorded
(:meth:`~critic_guard.store.base.Store.run_summaries`): runs, judged steps, flag rate and outcomes, so a team sees
its critic at work before it pilots (docs/report.md, "Observe mode").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from critic_guard.lifecycle import GuardState, evidence_of
from critic_guard.report.track import counted_at
from critic_guard.safe_text import text
from critic_guard.store.base import PairStatus, RunSummary, Store

__all__ = ["OBSERVED", "render_status", "status_rows"]

OBSERVED = "observed"
"""The state shown for a key with runs but no pairs and no lifecycle record (modes ``observe`` and ``on``)."""


def _observed(summary: RunSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "runs": summary.runs,
        "judged_steps": summary.judged_steps,
        "flagged_steps": summary.flagged_steps,
        "flag_rate": summary.flag_rate,
        "flagged_runs": summary.flagged_runs,
        "critic_errors": summary.critic_errors,
        "interventions": summary.interventions,
        "outcomes": summary.outcomes,
        "failures": summary.failures,
        "abandoned": summary.abandoned,
    }


def status_rows(store: Store) -> list[dict[str, Any]]:
    """One JSON-ready row per guard key (with pairs, a lifecycle record or runs), sorted by key."""
    summaries = {s.guard_key: s for s in store.run_summaries()}
    piloted = set(store.guard_keys())
    rows = []
    for key in sorted(piloted | set(summaries)):
        record = store.get_guard(key)
        last = None if record is None else record.last_transition
        without_record = GuardState.PILOT.value if key in piloted else OBSERVED
        rows.append(
            {
                "guard_key": key,
                "state": without_record if record is None else record.state.value,
                "evidence": None if record is None else evidence_of(record),
                "aa_pairs": 0 if record is None else record.aa_pairs,
                "incomplete": 0 if record is None else record.incomplete,
                "open": len(store.pairs(key, PairStatus.OPEN)),
                "last_transition": None
                if last is None
                else {
                    "from_state": last.from_state.value,
                    "to_state": last.to_state.value,
                    "reason": last.reason,
                    "actor": last.actor,
                    "at": last.at,
                },
                "observed": _observed(summaries.get(key)),
            }
        )
    return rows


_STYLE = {"enabled": "bold green", "disabled": "bold red", "pilot": "bold yellow", OBSERVED: "bold blue"}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pair(evidence: dict[str, Any], name: str) -> int | None:
    """The monitor's count in ``evidence[name]`` as a pair number over all of its restarts, as the report and the
    transitions number pairs (critic_guard.report.track)."""
    return counted_at(evidence["pairs"], evidence["t"], evidence[name])


def _proofs(evidence: dict[str, Any]) -> str:
    """Which e-process has proven its case, and when, or that the pilot budget ran out without a proof: in mode
    ``pilot`` the state stays ``pilot`` even then (only ``auto`` acts on a proof), and an inconclusive budget may
    keep it in ``pilot`` too (docs/lifecycle.md), so the table says it where the state cannot."""
    proofs = [
        f"{side} proven at pair {_pair(evidence, f'{side}_proven_at')}"
        for side in ("harm", "benefit")
        if evidence.get(f"{side}_proven_at") is not None
    ]
    if evidence.get("inconclusive_at") is not None:  # a spent pilot budget: no proof, and not a harm verdict
        proofs.append(f"inconclusive: pilot budget spent at pair {_pair(evidence, 'inconclusive_at')}, no proof")
    return "; " + "; ".join(proofs) if proofs else ""


def _runs_line(observed: dict[str, Any]) -> str:
    """Production runs, judged steps, flag rate, outcomes (and interventions, critic errors when there are any)."""
    rate = observed["flag_rate"]
    parts = [
        f"{observed['runs']} (flagged {observed['flagged_runs']})",
        f"judged steps {observed['judged_steps']}, flagged {observed['flagged_steps']}"
        + ("" if rate is None else f" (flag rate {rate:.1%})"),
        f"outcomes {observed['outcomes']} ({observed['failures']} failed)",
    ]
    if observed["interventions"]:
        parts.append(f"interventions {observed['interventions']}")
    if observed["critic_errors"]:
        parts.append(f"critic errors {observed['critic_errors']}")
    if observed["abandoned"]:
        parts.append(f"abandoned {observed['abandoned']} (never reached their end, no outcome)")
    return "; ".join(parts)


def _details(row: dict[str, Any]) -> Table:
    """One guard's state, evidence and last transition as label / value lines (values wrap, labels do not)."""
    evidence, last = row["evidence"], row["last_transition"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    state = row["state"]
    shown = f"{state} (runs only: no pairs, no lifecycle record; run a pilot next)" if state == OBSERVED else state
    grid.add_row("state", text(shown, _STYLE.get(state, "")))
    if row["observed"] is not None:
        grid.add_row("runs", _runs_line(row["observed"]))
    if state == OBSERVED:
        return grid
    if evidence is None:
        grid.add_row("pairs", "0")
    else:
        n00, n01, n10, n11 = evidence["counts"]
        grid.add_row("pairs", f"{evidence['pairs']} (n00 {n00}, n01 {n01}, n10 {n10}, n11 {n11})")
        grid.add_row(
            "harm / benefit e-value",
            f"{evidence['harm_wealth']:.3g} / {evidence['benefit_wealth']:.3g} "
            f"(proof at {evidence['threshold']:.3g}){_proofs(evidence)}",
        )
    if row["incomplete"]:  # pairs whose shadow branch could not finish (e.g. stopped before a tool): excluded
        grid.add_row(
            "excluded", f"{row['incomplete']} pairs: a shadow branch or a run could not finish (reasons: report)"
        )
    if row["open"]:  # pairs still waiting for an outcome: in flight, or left by a lost write (docs/faults.md)
        grid.add_row("open", f"{row['open']} pairs still waiting for an outcome (not counted)")
    if last is None:
        grid.add_row("last transition", "-")
    else:
        moved = text(f"{last['from_state']} -> {last['to_state']} by {last['actor']}, {_when(last['at'])}: ")
        moved.append_text(text(last["reason"], "italic"))
        grid.add_row("last transition", moved)
    return grid


def render_status(rows: list[dict[str, Any]]) -> RenderableType:
    """Each guard key on a line of its own, never wrapped or cut: it is what ``disable KEY`` takes (print with
    ``crop=False``, so a terminal narrower than the key soft-wraps it and it copies back as one line). Below it the
    state, pairs and cells (and the pairs excluded), monitor wealth against its threshold and the last transition.
    Stored strings are shown as data (critic_guard.safe_text)."""
    parts: list[RenderableType] = [Text("Guards", style="bold")]
    for row in rows:
        key = text(row["guard_key"], "bold cyan")
        key.no_wrap, key.overflow = True, "ignore"
        parts += [Text(""), key, Padding(_details(row), (0, 0, 0, 2), expand=False)]
    return Group(*parts)
