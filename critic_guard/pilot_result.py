"""What a pilot reports: the :class:`Tally` of its tasks while it runs (drawn by a :class:`PilotProgress`), and the
:class:`PilotResult` of one :func:`~critic_guard.pilot.run_pilot` call.

Why apart from the runner (critic_guard/pilot.py): these are plain records the command line renders and prints as
JSON; users import them from :mod:`critic_guard.pilot`, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from critic_guard.lifecycle import GuardRecord
from critic_guard.stats.counts import PairedCounts
from critic_guard.stats.report import PilotReport
from critic_guard.store.base import PairRecord, PairStatus, PilotTaskRecord, PilotTaskStatus

__all__ = ["PilotProgress", "PilotResult", "Tally"]


@dataclass
class Tally:
    """Where a pilot's tasks stand: cells of complete A/B pairs, and what is not counted, and why."""

    total: int
    done: int = 0
    failed: int = 0
    n00: int = 0
    n01: int = 0
    n10: int = 0
    n11: int = 0
    flagged: int = 0  # complete pairs that forked a shadow branch (the rest cost one run)
    incomplete: int = 0  # pairs of done tasks whose branch could not finish (excluded)
    abandoned: int = 0  # pairs of interrupted attempts (excluded)
    open: int = 0  # done tasks whose pair still waits for an outcome
    unpaired: int = 0  # done tasks without a pair (e.g. AUTO once disabled)
    failures: dict[str, str] = field(default_factory=dict)  # failed task id -> why (a rerun runs them again)

    @property
    def counts(self) -> PairedCounts:
        return PairedCounts(self.n00, self.n01, self.n10, self.n11)

    def add(self, row: PilotTaskRecord, pair: PairRecord | None) -> None:
        """Count one task's final row and its production pair."""
        self.abandoned += row.abandoned
        if row.status is PilotTaskStatus.FAILED:
            self.failed += 1
            self.failures[row.task_id] = row.error or "no reason recorded"
            return
        if row.status is not PilotTaskStatus.DONE:
            return
        self.done += 1
        if pair is None:
            self.unpaired += 1
        elif pair.status is PairStatus.INCOMPLETE:
            self.incomplete += 1
        elif pair.cell is None:
            self.open += 1
        else:
            setattr(self, pair.cell, getattr(self, pair.cell) + 1)
            self.flagged += pair.flagged


class PilotProgress(Protocol):
    """What the runner reports while it runs (``critic_guard.pilot_view.RichProgress`` draws it)."""

    def update(self, tally: Tally, verdict: str | None) -> None: ...


@dataclass(frozen=True)
class PilotResult:
    """The outcome of one :func:`run_pilot` call (of the whole pilot so far, resumed parts included)."""

    pilot_key: str
    guard_key: str
    tally: Tally
    ran: int  # attempts this call ran
    skipped: int  # tasks already done when this call started
    lifecycle: GuardRecord | None  # None when the store could not be read at the end
    report: PilotReport | None  # None while no pair is complete
    lost_writes: int = 0  # the guard's run, outcome and pair writes lost in this call (their tasks failed)

    @property
    def ok(self) -> bool:
        """Whether every task ran and was recorded (else ``critic-guard pilot`` exits non-zero)."""
        return not self.tally.failed and not self.lost_writes

    def to_dict(self) -> dict[str, Any]:
        t = self.tally
        return {
            "pilot_key": self.pilot_key,
            "guard_key": self.guard_key,
            "tasks": t.total,
            "done": t.done,
            "failed": t.failed,
            "failed_tasks": dict(sorted(t.failures.items())),
            "lost_writes": self.lost_writes,
            "ran": self.ran,
            "skipped": self.skipped,
            "pairs": {"n00": t.n00, "n01": t.n01, "n10": t.n10, "n11": t.n11},
            "flagged": t.flagged,
            "incomplete": t.incomplete,
            "abandoned": t.abandoned,
            "open": t.open,
            "unpaired": t.unpaired,
            "lifecycle": None if self.lifecycle is None else self.lifecycle.state.value,
            "report": None if self.report is None else self.report.to_dict(),
        }
