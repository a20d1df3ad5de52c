"""Gathering what a pilot report shows: from a store (one guard key) or from a pairs file, into a frozen
:class:`ReportData`.

Why a separate step: the numbers (:mod:`critic_guard.report.numbers`) and the page
(:mod:`critic_guard.report.html`) should not know where the pairs came from, and a test can build a
``ReportData`` from a real store once and check every later step against it. Reading uses only the public store
API (``pairs``, ``steps_of``, ``transitions``, ``get_guard``; critic quality through
:func:`critic_guard.calibration.labeled_verdicts`), so it works the same on SQLite and PostgreSQL.

A pairs file holds outcomes only: the sections that need the store (lifecycle, steps, critic scores, A/A noise,
incomplete branches) are then marked as not available rather than left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from critic_guard.calibration import labeled_verdicts
from critic_guard.lifecycle import GuardState, Transition
from critic_guard.pairs_io import read_pair_list
from critic_guard.stats.counts import PairedCounts
from critic_guard.store.base import PairKind, PairRecord, PairStatus, StepRecord, Store

__all__ = [
    "PairPoint",
    "ReportData",
    "StoreExtras",
    "UnknownGuardKeyError",
    "choose_guard_key",
    "from_pairs_file",
    "from_store",
]


class UnknownGuardKeyError(ValueError):
    """The store has no such guard key, none at all, or several and none was chosen (the message lists them)."""


@dataclass(frozen=True, slots=True)
class PairPoint:
    """One completed A/B pair in completion order, with where and how confidently the critic first flagged it.

    ``flagged`` is None when the source does not say (a pairs file); ``fork_step`` and ``p_fail`` are None for a
    task never flagged, or when the store holds no step records for it.
    """

    control: bool
    treatment: bool
    flagged: bool | None = None
    fork_step: int | None = None
    p_fail: float | None = None


@dataclass(frozen=True, slots=True)
class StoreExtras:
    """What only a store knows: the lifecycle, A/A noise, excluded branches and the critic's labeled scores.

    ``monitor_split`` is whether the guard's alpha bounds both e-processes together (docs/statistics.md);
    ``inconclusive_at`` the pair at which its pilot budget ran out without a proof, if it did.
    """

    state: GuardState | None
    monitor_alpha: float | None
    transitions: tuple[Transition, ...]
    aa_pairs: int
    aa_discordant: int
    incomplete_reasons: tuple[str, ...]
    scores: tuple[float, ...]
    failed: tuple[bool, ...]
    open_pairs: int = 0  # pairs still waiting for an outcome: in flight, or left by a lost write (docs/faults.md)
    monitor_split: bool = True
    inconclusive_at: int | None = None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report shows, read once. ``store`` is None for a pairs file."""

    source: str
    guard_key: str | None
    pairs: tuple[PairPoint, ...]
    store: StoreExtras | None = None

    @property
    def counts(self) -> PairedCounts:
        """The cells of the A/B pairs (the same counting as ``critic-guard analyze`` on a pairs file)."""
        return PairedCounts.from_pairs((p.control, p.treatment) for p in self.pairs)


def from_pairs_file(path: str | Path) -> ReportData:
    """Pairs in file order; raises :class:`~critic_guard.pairs_io.PairsFileError` as ``analyze`` does."""
    pairs = tuple(PairPoint(control, treatment) for control, treatment in read_pair_list(path))
    return ReportData(source=f"pairs file {Path(path).name}", guard_key=None, pairs=pairs)


def choose_guard_key(store: Store, key: str | None, keys: Sequence[str] | None = None) -> str:
    """``key`` if the store knows it; with no key, the only one there is. Otherwise a clear error listing keys.

    ``keys``: the keys to choose from (default: those with pairs or a lifecycle record, ``store.guard_keys()``).
    """
    keys = store.guard_keys() if keys is None else list(keys)
    if key is not None:
        if key not in keys:
            listed = ", ".join(keys) if keys else "none"
            raise UnknownGuardKeyError(f"unknown guard key {key!r}; the store has: {listed}")
        return key
    if not keys:
        raise UnknownGuardKeyError("the store has no guard keys yet (no pairs and no lifecycle records)")
    if len(keys) > 1:
        raise UnknownGuardKeyError(f"the store has {len(keys)} guard keys, choose one with --key: {', '.join(keys)}")
    return keys[0]


def _first_flag(steps: Sequence[StepRecord]) -> StepRecord | None:
    return next((s for s in steps if s.flagged), None)


def _point(store: Store, pair: PairRecord) -> PairPoint:
    """The pair's outcomes plus the production run's first flagged step (the fork point) and its score."""
    assert pair.control_success is not None and pair.treatment_success is not None  # complete pairs only
    fork_step, p_fail = pair.fork_step, None
    if pair.flagged:
        production = pair.pair_id if pair.pair_id in (pair.control_run_id, pair.treatment_run_id) else None
        flag = _first_flag(store.steps_of(production or pair.control_run_id))
        if flag is not None:
            fork_step = flag.step if fork_step is None else fork_step
            p_fail = flag.p_fail
    else:
        fork_step = None
    return PairPoint(pair.control_success, pair.treatment_success, pair.flagged, fork_step, p_fail)


def from_store(store: Store, guard_key: str, *, source: str) -> ReportData:
    """Read one guard key: completed A/B pairs in completion order, A/A pairs, incomplete pairs, the lifecycle."""
    pairs = store.pairs(guard_key)
    complete = sorted(
        (p for p in pairs if p.status is PairStatus.COMPLETE),
        key=lambda p: (p.completed_at or 0.0, p.created_at, p.pair_id),
    )
    ab = tuple(_point(store, p) for p in complete if p.kind is PairKind.AB)
    aa = [p for p in complete if p.kind is PairKind.AA]
    record = store.get_guard(guard_key)
    scores, failed = labeled_verdicts(store, guard_key)
    extras = StoreExtras(
        state=None if record is None else record.state,
        monitor_alpha=None if record is None else record.monitor.alpha,
        transitions=tuple(store.transitions(guard_key)),
        aa_pairs=len(aa),
        aa_discordant=sum(p.control_success != p.treatment_success for p in aa),
        incomplete_reasons=tuple(p.reason or "no reason recorded" for p in pairs if p.status is PairStatus.INCOMPLETE),
        scores=tuple(float(s) for s in scores),
        failed=tuple(bool(f) for f in failed),
        open_pairs=sum(p.status is PairStatus.OPEN for p in pairs),
        monitor_split=True if record is None else record.monitor.split,
        inconclusive_at=None if record is None else record.monitor.inconclusive_at,
    )
    return ReportData(source=source, guard_key=guard_key, pairs=ab, store=extras)
