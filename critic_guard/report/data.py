"""Gathering what a pilot report shows: from a store (one guard key) or from a pairs file, into a frozen
:class:`ReportData`.

Why a separate step: the numbers (:mod:`critic_guard.report.numbers`) and the page
(:mod:`critic_guard.report.html`) should not know where the pairs came from, and a test can build a
``ReportData`` from a real store once and check every later step against it. Reading is a few set-based statements
for the whole guard key (:meth:`~critic_guard.store.ledger.LedgerStore.track_rows`: the pairs with their fork point
and the monitor the lifecycle stored after each; the labeled verdicts; ``pairs``, ``transitions``, ``get_guard``),
never one query per pair, and works the same on SQLite and PostgreSQL.

A pairs file holds outcomes only: the sections that need the store (lifecycle, steps, critic scores, A/A noise,
incomplete branches) are then marked as not available rather than left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from critic_guard.lifecycle import GuardState, Transition
from critic_guard.pairs_io import read_pair_list
from critic_guard.report.columns import PairColumns, PairPoint, as_columns
from critic_guard.report.track import StoredTrack, counted_at, stored_track
from critic_guard.stats.counts import PairedCounts
from critic_guard.store.base import Store
from critic_guard.store.pair_track import TrackSource

__all__ = [
    "PairColumns",
    "PairPoint",
    "ReportData",
    "StoreExtras",
    "StoredTrack",
    "UnknownGuardKeyError",
    "choose_guard_key",
    "from_pairs_file",
    "from_store",
]


class UnknownGuardKeyError(ValueError):
    """The store has no such guard key, none at all, or several and none was chosen (the message lists them)."""


@dataclass(frozen=True, slots=True)
class StoreExtras:
    """What only a store knows: the lifecycle, A/A noise, excluded branches and the critic's labeled scores.

    ``monitor_split`` is whether the guard's alpha bounds both e-processes together (docs/statistics.md);
    ``inconclusive_at`` the pair (counted over the monitor's restarts) at which its pilot budget ran out without a
    proof, if it did; ``track`` the monitor after each pair as the lifecycle stored it (:mod:`.track`).
    ``scores``/``failed`` may be numpy arrays (a million verdicts are not held as Python floats).
    """

    state: GuardState | None
    monitor_alpha: float | None
    transitions: tuple[Transition, ...]
    aa_pairs: int
    aa_discordant: int
    incomplete_reasons: tuple[str, ...]
    scores: Sequence[float] | NDArray[np.float64]
    failed: Sequence[bool] | NDArray[np.bool_]
    open_pairs: int = 0  # pairs still waiting for an outcome: in flight, or left by a lost write (docs/faults.md)
    monitor_split: bool = True
    inconclusive_at: int | None = None
    track: StoredTrack | None = None


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report shows, read once. ``store`` is None for a pairs file."""

    source: str
    guard_key: str | None
    pairs: PairColumns  # given as any sequence of PairPoint, kept as columns (critic_guard.report.columns)
    store: StoreExtras | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pairs", as_columns(self.pairs))

    @property
    def counts(self) -> PairedCounts:
        """The cells of the A/B pairs (the same counting as ``critic-guard analyze`` on a pairs file)."""
        return PairedCounts(*(int(n) for n in np.bincount(self.pairs.cells, minlength=4)))


def from_pairs_file(path: str | Path) -> ReportData:
    """Pairs in file order; raises :class:`~critic_guard.pairs_io.PairsFileError` as ``analyze`` does."""
    pairs = [PairPoint(control, treatment) for control, treatment in read_pair_list(path)]
    return ReportData(source=f"pairs file {Path(path).name}", guard_key=None, pairs=PairColumns.of(pairs))


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


def _track_source(store: Store) -> TrackSource:
    if not isinstance(store, TrackSource):
        raise TypeError(f"{type(store).__name__} cannot read a guard's pairs set-based (no track_columns)")
    return store


def from_store(store: Store, guard_key: str, *, source: str) -> ReportData:
    """Read one guard key: completed A/B pairs in the lifecycle's order with the monitor after each, A/A pairs,
    incomplete pairs, the lifecycle."""
    reader = _track_source(store)
    columns = reader.track_columns(guard_key)
    tallies = reader.pair_tallies(guard_key)
    record = store.get_guard(guard_key)
    alpha = 0.05 if record is None else record.monitor.alpha
    split = True if record is None else record.monitor.split
    scores, failed = reader.labeled_verdict_arrays(guard_key)
    monitor = None if record is None else record.monitor
    extras = StoreExtras(
        state=None if record is None else record.state,
        monitor_alpha=None if monitor is None else monitor.alpha,
        transitions=tuple(store.transitions(guard_key)),
        aa_pairs=0 if record is None else record.aa_pairs,  # the lifecycle's count, as status shows it
        aa_discordant=0 if record is None else record.aa_discordant,
        incomplete_reasons=tallies.incomplete_reasons,
        scores=scores,
        failed=failed,
        open_pairs=tallies.open_pairs,
        monitor_split=split,
        inconclusive_at=None
        if record is None or monitor is None
        else counted_at(record.pairs_counted, monitor.t, monitor.inconclusive_at),
        track=stored_track(columns, alpha=alpha, split=split) if len(columns.cells) else None,
    )
    pairs = PairColumns(
        columns.cells >= 2,
        columns.cells % 2 == 1,
        columns.flagged,
        columns.fork_step,
        columns.p_fail,
    )
    return ReportData(source=source, guard_key=guard_key, pairs=pairs, store=extras)
