"""What ``critic-guard status`` shows: every guard key in a store with its lifecycle state, evidence and last
transition, as rows (for ``--json``) and as a rich table.

The evidence is :func:`critic_guard.lifecycle.evidence_of`, the same dict a transition records, so the status
page and the transition log never describe the monitor differently. A key that has pairs but no lifecycle record
yet (no pair completed) is shown in ``pilot`` with no evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from critic_guard.lifecycle import GuardState, evidence_of
from critic_guard.store.base import Store

__all__ = ["render_status", "status_rows"]


def status_rows(store: Store) -> list[dict[str, Any]]:
    """One JSON-ready row per guard key, sorted by key."""
    rows = []
    for key in store.guard_keys():
        record = store.get_guard(key)
        last = None if record is None else record.last_transition
        rows.append(
            {
                "guard_key": key,
                "state": GuardState.PILOT.value if record is None else record.state.value,
                "evidence": None if record is None else evidence_of(record),
                "aa_pairs": 0 if record is None else record.aa_pairs,
                "incomplete": 0 if record is None else record.incomplete,
                "last_transition": None
                if last is None
                else {
                    "from_state": last.from_state.value,
                    "to_state": last.to_state.value,
                    "reason": last.reason,
                    "actor": last.actor,
                    "at": last.at,
                },
            }
        )
    return rows


_STYLE = {"enabled": "bold green", "disabled": "bold red", "pilot": "bold yellow"}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _proofs(evidence: dict[str, Any]) -> str:
    """Which e-process has proven its case, and when: in mode ``pilot`` the state stays ``pilot`` even then (only
    ``auto`` acts on a proof), so the table says it where the state cannot."""
    proofs = [
        f"{side} proven at pair {evidence[f'{side}_proven_at']}"
        for side in ("harm", "benefit")
        if evidence.get(f"{side}_proven_at") is not None
    ]
    return "; " + "; ".join(proofs) if proofs else ""


def render_status(rows: list[dict[str, Any]]) -> Table:
    """The rows as a table: key, state, pairs and cells, monitor wealth against its threshold, last transition."""
    table = Table(title="Guards", title_justify="left")
    for name in ("guard key", "state", "pairs", "n00 n01 n10 n11", "harm / benefit e-value", "last transition"):
        table.add_column(name, justify="right" if name == "pairs" else "left")
    for row in rows:
        evidence, last = row["evidence"], row["last_transition"]
        if evidence is None:
            pairs, cells, wealth = "0", "-", "-"
        else:
            pairs = str(evidence["pairs"])
            cells = " ".join(str(c) for c in evidence["counts"])
            wealth = (
                f"{evidence['harm_wealth']:.3g} / {evidence['benefit_wealth']:.3g} "
                f"(proof at {evidence['threshold']:.3g}){_proofs(evidence)}"
            )
        moved = (
            "-"
            if last is None
            else (
                f"{last['from_state']} -> {last['to_state']} by {last['actor']}, {_when(last['at'])}: {last['reason']}"
            )
        )
        state = row["state"]
        table.add_row(row["guard_key"], f"[{_STYLE.get(state, '')}]{state}[/]", pairs, cells, wealth, moved)
    return table
