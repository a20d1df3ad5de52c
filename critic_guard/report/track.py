"""The monitor's path through a pilot as the lifecycle walked it: read from the snapshots stored with each pair.

The report's band over time, "harm proven after N pairs" and the status page's proofs must be what the guard's
lifecycle did, including a human's monitor reset and pairs that replicas completed in another order than their
timestamps (docs/report.md, "Net effect over time"). Each completed A/B pair carries the monitor's state after it
(:mod:`critic_guard.store.pair_track`), so this module only reads; it never runs a monitor of its own, except over
the pairs that a version before those snapshots completed: those, and only those, are replayed from a fresh
monitor in completion order (what every report did before), and :attr:`StoredTrack.replayed` says how many.

Pair numbers are the lifecycle's count of A/B pairs over all of the monitor's restarts (``GuardRecord.pairs_counted``,
a transition's ``evidence["pairs"]``); the monitor's own ``t`` restarts at a reset, so a proof at the monitor's
``t = k`` is pair ``pairs - t + k`` (:func:`counted_at`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from critic_guard.store.pair_track import TrackColumns

__all__ = ["StoredTrack", "counted_at", "stored_track"]


def counted_at(pairs: int, t: int, at: int | None) -> int | None:
    """The pair number (all restarts counted) of the monitor's ``t = at``, given a moment with ``pairs`` counted
    pairs and monitor count ``t``; None stays None."""
    return None if at is None else pairs - t + at


@dataclass(frozen=True, slots=True)
class StoredTrack:
    """The confidence band after each pair of the report (in its order) and the standing proofs, as stored.

    ``low``/``high`` of the first ``replayed`` pairs are recomputed (no snapshot: completed by an older version);
    the rest are the lifecycle's own. ``harm_proven_at``/``benefit_proven_at`` are the pair numbers at which the
    monitor standing after the last pair proved its case (None: not proven since its last restart). ``resets``:
    the pairs after which the monitor restarted (``critic-guard enable|disable --reset-monitor``).
    """

    low: NDArray[np.float64]
    high: NDArray[np.float64]
    harm_proven_at: int | None
    benefit_proven_at: int | None
    replayed: int
    resets: tuple[int, ...]


def _replay(
    cells: NDArray[np.int64], alpha: float, split: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64], int, int]:
    """Band, harm and benefit proof (0: none) over pairs without a snapshot, from a fresh monitor in completion
    order: how every report worked before the snapshots."""
    from critic_guard.stats import run_monitor

    control, treatment = cells // 2, cells % 2
    paths = run_monitor(((control - treatment + 1) / 2.0)[None, :], alpha=alpha, split=split)
    assert paths.net_low is not None and paths.net_high is not None
    return paths.net_low[0], paths.net_high[0], int(paths.harm_times()[0]), int(paths.benefit_times()[0])


def stored_track(columns: TrackColumns, *, alpha: float, split: bool) -> StoredTrack:
    """The track of ``columns`` (pairs without a snapshot first). ``alpha``/``split`` are the guard's, used only to
    replay pairs without a snapshot."""
    old = columns.replayed
    low, high = columns.band_low.copy(), columns.band_high.copy()
    harm: int | None = None
    benefit: int | None = None
    if old:
        low[:old], high[:old], replayed_harm, replayed_benefit = _replay(columns.cells[:old], alpha, split)
        harm, benefit = replayed_harm or None, replayed_benefit or None
    epoch = columns.epoch[old:]  # pairs before the monitor's start: 0 until the first reset
    before = np.r_[0, epoch[:-1]] if len(epoch) else epoch
    resets = tuple(int(v) for v in epoch[epoch != before])
    if columns.last is not None:
        seq, t, harm_at, benefit_at = columns.last
        harm, benefit = counted_at(seq, t, harm_at), counted_at(seq, t, benefit_at)
    return StoredTrack(low, high, harm, benefit, old, resets)
