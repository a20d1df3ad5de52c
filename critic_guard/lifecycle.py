"""The lifecycle of a guard (docs/lifecycle.md): pilot -> enabled / disabled, as pure functions over frozen records.

Why pure functions: the same rule must run inside a store transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
``SELECT ... FOR UPDATE``) on whichever replica completes a pair, and in memory for a guard without a store. A
function from (record, pair) to (new record, transition or None) runs the same everywhere, is trivially testable
with tables, and cannot half-apply: the store writes its result in one transaction or not at all.

The rule, in ``Mode.AUTO`` only (docs/lifecycle.md):

- ``pilot -> disabled`` when the harm e-process proves net < 0 (checked first: safety wins a tie);
- ``pilot -> enabled`` when the benefit e-process proves net > 0;
- ``enabled -> disabled`` when harm is proven;
- when ``max_pilot_pairs`` pairs completed in this pilot without either proof, the pilot is **inconclusive**
  (``monitor.inconclusive_at`` is set, once) and ``config.on_budget_spent`` says what follows: ``serve_control``
  (default: the state stays pilot, production serves control and nothing forks; not a harm verdict), ``disable``
  (``pilot -> disabled``) or ``keep_piloting`` (the pilot goes on as before); each records a transition whose
  reason starts "budget spent, inconclusive";
- ``disabled`` stays until a human changes it (:func:`override`).

In every other mode the monitor still learns from each pair, but the state never changes automatically.
A/A pairs (two runs of the same arm) measure rerun noise: they are counted, never fed to the monitor.

``critic_guard.stats`` is imported on first use, not with this module: it loads scipy (about 0.7 s), which a guard
in ``observe`` or ``on`` mode never needs, and the store interface imports these records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from critic_guard.types import Mode

if TYPE_CHECKING:
    from critic_guard.config import GuardConfig
    from critic_guard.stats.counts import PairedCounts
    from critic_guard.stats.monitor import MonitorState

__all__ = [
    "ACTOR_HUMAN",
    "ACTOR_MONITOR",
    "GuardRecord",
    "GuardState",
    "LifecycleError",
    "Transition",
    "apply_aa_pair",
    "apply_incomplete",
    "apply_pair",
    "evidence_of",
    "new_counts",
    "new_monitor",
    "outcome_of",
    "override",
    "paused_after_budget",
]

ACTOR_MONITOR = "monitor"
"""The actor of automatic transitions (the lifecycle rule applied to the sequential monitor)."""
_MAX_LOG_WEALTH = 690.0
ACTOR_HUMAN = "human"
"""The default actor of :func:`override` (``critic-guard enable|disable``)."""


class LifecycleError(ValueError):
    """A requested state change that the lifecycle refuses (with the reason and what to do instead)."""


def new_monitor(alpha: float, split: bool = True) -> MonitorState:
    """A fresh :class:`~critic_guard.stats.MonitorState` (imports the statistics package on first use).

    ``split``: ``alpha`` bounds a wrong harm *or* benefit proof in total (``alpha/2`` per e-process); False gives
    each e-process ``alpha`` (``GuardConfig.alpha_per_side``).
    """
    from critic_guard.stats.monitor import MonitorState

    return MonitorState.start(alpha, split=split)


def new_counts(n00: int = 0, n01: int = 0, n10: int = 0, n11: int = 0) -> PairedCounts:
    """A :class:`~critic_guard.stats.PairedCounts` (imports the statistics package on first use)."""
    from critic_guard.stats.counts import PairedCounts

    return PairedCounts(n00, n01, n10, n11)


class GuardState(StrEnum):
    """Where a guard is in its lifecycle. Only ``Mode.AUTO`` acts on it."""

    PILOT = "pilot"  # collecting evidence: the production run serves ``config.serve``, the other arm runs in shadow
    ENABLED = "enabled"  # benefit proven: production runs intervene, a fraction still forks a shadow control
    DISABLED = "disabled"  # harm proven, a human said so, or on_budget_spent="disable": no intervention


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a guard's state, with why, who, when, and the monitor's evidence at that moment."""

    guard_key: str
    from_state: GuardState
    to_state: GuardState
    reason: str
    actor: str
    at: float
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_state", GuardState(self.from_state))
        object.__setattr__(self, "to_state", GuardState(self.to_state))
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))


@dataclass(frozen=True, slots=True)
class GuardRecord:
    """Everything the lifecycle knows about one guard key; persisted as one row and shared by all replicas.

    ``counts`` are the A/B pairs fed to the monitor (cells as in docs/statistics.md); ``aa_pairs``/``aa_discordant`` the
    A/A noise pairs; ``incomplete`` the pairs excluded because a shadow branch could not finish. ``state_since_t``
    is ``monitor.t`` when the current state began (the pilot budget counts pairs from there). ``version`` grows by
    one with every change, so a stale copy is recognisable. ``last_transition`` is filled in by readers.
    """

    guard_key: str
    state: GuardState
    monitor: MonitorState
    counts: PairedCounts = field(default_factory=new_counts)
    aa_pairs: int = 0
    aa_discordant: int = 0
    incomplete: int = 0
    state_since_t: int = 0
    version: int = 0
    updated_at: float = 0.0
    last_transition: Transition | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", GuardState(self.state))

    @classmethod
    def start(cls, guard_key: str, alpha: float = 0.05, *, split: bool = True, now: float = 0.0) -> GuardRecord:
        """A guard with no evidence yet: state pilot, fresh monitor at level ``alpha`` (see :func:`new_monitor`)."""
        if not guard_key:
            raise ValueError("guard_key must be a non-empty string")
        return cls(guard_key, GuardState.PILOT, new_monitor(alpha, split), updated_at=now)

    @property
    def pairs_counted(self) -> int:
        """A/B pairs fed to the monitor (all epochs; ``monitor.t`` counts those since the last reset)."""
        return self.counts.n

    @property
    def pilot_pairs(self) -> int:
        """Pairs the monitor saw since the current state began (the pilot budget counts these)."""
        return self.monitor.t - self.state_since_t


def evidence_of(record: GuardRecord) -> dict[str, Any]:
    """The monitor's evidence as plain JSON values: what a transition records and a status page shows."""
    monitor = record.monitor
    net = monitor.net_interval()
    return {
        "t": monitor.t,
        "pairs": record.pairs_counted,
        "outcome": outcome_of(monitor),
        "alpha": monitor.alpha,
        "alpha_per_side": monitor.side_alpha,
        "threshold": monitor.threshold,
        "harm_wealth": _wealth(monitor.harm_log_wealth),
        "benefit_wealth": _wealth(monitor.benefit_log_wealth),
        "harm_proven_at": monitor.harm_proven_at,
        "benefit_proven_at": monitor.benefit_proven_at,
        "inconclusive_at": monitor.inconclusive_at,
        "net_low": net.low,
        "net_high": net.high,
        "net_level": net.level,
        "counts": [record.counts.n00, record.counts.n01, record.counts.n10, record.counts.n11],
    }


def paused_after_budget(record: GuardRecord, config: GuardConfig) -> bool:
    """Whether an AUTO guard serves control and forks nothing because its pilot ended inconclusive and
    ``config.on_budget_spent`` is ``serve_control`` (the state stays pilot: a budget is not a verdict)."""
    return (
        record.state is GuardState.PILOT
        and record.monitor.inconclusive_at is not None
        and config.on_budget_spent == "serve_control"
    )


def outcome_of(monitor: MonitorState) -> str:
    """The monitor's answer so far: ``harm proven``, ``benefit proven``, ``inconclusive`` (a pilot budget ran out
    without a proof: not evidence of harm) or ``undecided``. Harm first, as in the rule."""
    if monitor.harm_proven:
        return "harm proven"
    if monitor.benefit_proven:
        return "benefit proven"
    return "inconclusive" if monitor.inconclusive_at is not None else "undecided"


def _count(counts: PairedCounts, control_success: bool, treatment_success: bool) -> PairedCounts:
    cells = [counts.n00, counts.n01, counts.n10, counts.n11]
    cells[2 * int(control_success) + int(treatment_success)] += 1
    return new_counts(*cells)


def _check_outcomes(control_success: object, treatment_success: object) -> None:
    if not isinstance(control_success, bool) or not isinstance(treatment_success, bool):
        raise TypeError(
            f"pair outcomes must be bools, got {type(control_success).__name__} and {type(treatment_success).__name__}"
        )


_BUDGET_ACTION = {
    "serve_control": "production serves control and nothing forks; not evidence of harm",
    "disable": "disabled by on_budget_spent='disable'; not evidence of harm",
    "keep_piloting": "the pilot goes on (on_budget_spent='keep_piloting')",
}


def _auto_rule(record: GuardRecord, config: GuardConfig) -> tuple[GuardState, str, bool] | None:
    """The state the AUTO rule moves to after the newest pair, why, and whether the budget ran out; None to stay."""
    monitor = record.monitor
    threshold = monitor.threshold
    max_pilot_pairs = config.max_pilot_pairs
    if record.state is GuardState.DISABLED:
        return None
    if monitor.harm_proven:
        return (
            GuardState.DISABLED,
            (
                f"harm proven: harm e-value {_wealth(monitor.harm_log_wealth):.3g} >= 1/{monitor.side_alpha:g} = "
                f"{threshold:.3g} after {monitor.harm_proven_at} pairs"
            ),
            False,
        )
    if record.state is GuardState.PILOT and monitor.benefit_proven:
        return (
            GuardState.ENABLED,
            (
                f"benefit proven: benefit e-value {_wealth(monitor.benefit_log_wealth):.3g} >= "
                f"1/{monitor.side_alpha:g} = {threshold:.3g} after {monitor.benefit_proven_at} pairs"
            ),
            False,
        )
    if (
        record.state is GuardState.PILOT
        and monitor.inconclusive_at is None
        and max_pilot_pairs is not None
        and record.pilot_pairs >= max_pilot_pairs
    ):
        action = config.on_budget_spent
        return (
            GuardState.DISABLED if action == "disable" else GuardState.PILOT,
            (
                f"budget spent, inconclusive: {record.pilot_pairs} pilot pairs without proof "
                f"(max_pilot_pairs={max_pilot_pairs}); {_BUDGET_ACTION[action]}"
            ),
            True,
        )
    return None


def apply_pair(
    record: GuardRecord,
    control_success: bool,
    treatment_success: bool,
    *,
    mode: Mode,
    config: GuardConfig,
    now: float,
) -> tuple[GuardRecord, Transition | None]:
    """Fold one completed A/B pair into ``record`` and apply the lifecycle rule (AUTO only).

    Returns the new record (``version`` + 1) and the transition it caused, if any. Pure: nothing is written.
    """
    _check_outcomes(control_success, treatment_success)
    updated = replace(
        record,
        monitor=record.monitor.update_pair(control_success, treatment_success),
        counts=_count(record.counts, control_success, treatment_success),
        version=record.version + 1,
        updated_at=now,
    )
    move = _auto_rule(updated, config) if Mode(mode) is Mode.AUTO else None
    if move is None:
        return updated, None
    to_state, reason, budget_spent = move
    if budget_spent:
        updated = replace(updated, monitor=updated.monitor.mark_inconclusive())
    return _transition(updated, to_state, reason, ACTOR_MONITOR, now)


def apply_aa_pair(
    record: GuardRecord, first_success: bool, second_success: bool, *, now: float
) -> tuple[GuardRecord, Transition | None]:
    """Count one A/A pair (two runs of the served arm). Never touches the monitor, never moves the state."""
    _check_outcomes(first_success, second_success)
    updated = replace(
        record,
        aa_pairs=record.aa_pairs + 1,
        aa_discordant=record.aa_discordant + (first_success != second_success),
        version=record.version + 1,
        updated_at=now,
    )
    return updated, None


def apply_incomplete(record: GuardRecord, *, now: float) -> GuardRecord:
    """Count one pair excluded because a branch could not finish (reported, never fed to the monitor)."""
    return replace(record, incomplete=record.incomplete + 1, version=record.version + 1, updated_at=now)


def override(
    record: GuardRecord,
    state: GuardState | str,
    *,
    reason: str,
    actor: str = ACTOR_HUMAN,
    reset_monitor: bool = False,
    alpha: float | None = None,
    split: bool | None = None,
    now: float,
) -> tuple[GuardRecord, Transition]:
    """A human (or other actor) sets the state: ``critic-guard enable|disable``.

    Refused with :class:`LifecycleError`: an empty reason; the current state again (unless ``reset_monitor``, or the
    pilot ended inconclusive: ``pilot`` again resumes it with the evidence so far and a fresh budget); a
    state that a standing proof would revert at the next pair in AUTO (enabled or pilot while harm is proven, pilot
    while benefit is proven) unless ``reset_monitor``. ``reset_monitor=True`` starts a fresh monitor (at ``alpha`` and
    ``split``, default the old ones) so the sequential guarantee holds again from here; the pair counts are kept.
    Any change ends an inconclusive budget's pause (``monitor.inconclusive_at`` clears): a human has decided.
    """
    to_state = GuardState(state)
    if not isinstance(reason, str) or not reason.strip():
        raise LifecycleError("a state change needs a reason (it is recorded with the transition)")
    if not isinstance(actor, str) or not actor.strip():
        raise LifecycleError("a state change needs an actor (who made it)")
    monitor = record.monitor
    if not reset_monitor:
        if to_state is record.state and monitor.inconclusive_at is None:  # pilot -> pilot ends a budget's pause
            raise LifecycleError(f"guard {record.guard_key!r} is already {to_state.value}")
        if monitor.harm_proven and to_state is not GuardState.DISABLED:
            raise LifecycleError(
                f"harm is proven for {record.guard_key!r} (harm e-value {_wealth(monitor.harm_log_wealth):.3g} after "
                f"{monitor.harm_proven_at} pairs): the next pair would disable it again; pass reset_monitor=True "
                "to start fresh evidence"
            )
        if monitor.benefit_proven and to_state is GuardState.PILOT:
            raise LifecycleError(
                f"benefit is proven for {record.guard_key!r} (after {monitor.benefit_proven_at} pairs): the next "
                "pair would enable it again; pass reset_monitor=True to start fresh evidence"
            )
    if reset_monitor:
        fresh = new_monitor(monitor.alpha if alpha is None else alpha, monitor.split if split is None else split)
        record = replace(record, monitor=fresh)
    elif monitor.inconclusive_at is not None:  # a human decided after the budget: its pause ends with this change
        record = replace(record, monitor=replace(monitor, inconclusive_at=None))
    updated = replace(record, version=record.version + 1, updated_at=now)
    return _transition(updated, to_state, reason.strip(), actor.strip(), now)


def _transition(
    record: GuardRecord, to_state: GuardState, reason: str, actor: str, now: float
) -> tuple[GuardRecord, Transition]:
    transition = Transition(
        guard_key=record.guard_key,
        from_state=record.state,
        to_state=to_state,
        reason=reason,
        actor=actor,
        at=now,
        evidence=evidence_of(record),
    )
    moved = replace(record, state=to_state, state_since_t=record.monitor.t, last_transition=transition)
    return moved, transition


def _wealth(log_wealth: float) -> float:
    """``exp(log_wealth)``, capped so that JSON (and PostgreSQL's jsonb) can hold it.

    ``MonitorState.harm_wealth`` is ``math.exp`` of the log-wealth, which overflows past about 709 (some 1,750
    pairs of one-sided evidence): far beyond any threshold, so a cap loses nothing.
    """
    return math.exp(min(log_wealth, _MAX_LOG_WEALTH))
