"""``PairBook``: one guard's pairs of runs, opened, completed or excluded (docs/pilot-design.md, docs/lifecycle.md).

A pair is the unit of evidence: a control and a treatment run of one task. Completing it feeds the sequential
monitor and may move the lifecycle; the store does both in one transaction (:func:`critic_guard.lifecycle.apply_pair`
inside ``complete_pair``), so any replica may complete any pair, once. Opening and excluding a pair are critical
writes: never dropped, retried in order when the store is away (:mod:`critic_guard.store_writes`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import replace

from critic_guard.config import GuardConfig
from critic_guard.guard_events import GuardObserver
from critic_guard.lifecycle import apply_pair
from critic_guard.lifecycle_view import LifecycleView
from critic_guard.store.base import (
    PairDesign,
    PairKind,
    PairRecord,
    PairStateError,
    PairStatus,
    PairUpdate,
    UnknownRunError,
)
from critic_guard.store_writes import StoreWrites

__all__ = ["PairBook"]

logger = logging.getLogger("critic_guard")


class PairBook:
    """The pairs of ``guard_key``. ``task_of(run_id)`` names a recent run's task from memory (no store read)."""

    def __init__(
        self,
        config: GuardConfig,
        guard_key: str,
        *,
        writes: StoreWrites,
        lifecycle: LifecycleView,
        events: GuardObserver,
        task_of: Callable[[str], str | None],
    ) -> None:
        self.config = config
        self.guard_key = guard_key
        self._writes = writes
        self._records = writes.records
        self._lifecycle = lifecycle
        self._events = events
        self._task_of = task_of

    def open(
        self,
        pair_id: str,
        *,
        control_run_id: str,
        treatment_run_id: str,
        flagged: bool,
        fork_step: int | None,
        task_id: str | None,
        kind: PairKind | str,
        design: PairDesign | str | None,
        fork_checkpoint_id: str | None,
        background: bool,
    ) -> PairRecord:
        """See :meth:`critic_guard.guard.CriticGuard.open_pair`."""
        pair = PairRecord(
            pair_id=pair_id,
            guard_key=self.guard_key,
            control_run_id=control_run_id,
            treatment_run_id=treatment_run_id,
            flagged=flagged,
            created_at=time.time(),
            kind=PairKind(kind),
            design=PairDesign(self.config.design if design is None else design),
            task_id=task_id if task_id is not None else self._task_of(control_run_id),  # from memory: no wait
            fork_step=fork_step,
            fork_checkpoint_id=fork_checkpoint_id,
        )
        one_run = not pair.flagged and pair.design is PairDesign.FORK
        if pair.single_run != one_run:
            raise ValueError(
                f"pair {pair_id!r}: "
                + (
                    "a task never flagged (fork design) has one run standing for both arms; pass the production "
                    "run id as both control_run_id and treatment_run_id"
                    if one_run
                    else "a flagged pair (or a design='full' pair) needs two different runs, one per arm"
                )
            )

        def write() -> PairRecord:
            known = pair if pair.task_id is not None else replace(pair, task_id=self._stored_task_of(control_run_id))
            stored = self._records.open_pair(known)
            if stored.status is PairStatus.OPEN and self.complete([stored]):
                return self._records.get_pair(pair_id)
            return stored

        stored = self._writes.critical("open_pair", control_run_id, write, pair, background=background)
        if fork_checkpoint_id is not None:
            self._events.fork_checkpoint(pair_id, fork_checkpoint_id)
        return stored

    def _stored_task_of(self, run_id: str) -> str | None:
        with suppress(UnknownRunError):
            return self._records.get_run(run_id).task_id
        return None

    def mark_incomplete(self, pair_id: str, reason: str, *, background: bool) -> None:
        """See :meth:`critic_guard.guard.CriticGuard.mark_incomplete`."""
        at = time.time()

        def write() -> None:
            if self._records.mark_incomplete(pair_id, reason, initial=self._lifecycle.initial(), at=at):
                self._lifecycle.invalidate()  # the counts changed: read them again next time

        self._writes.critical("mark_incomplete", pair_id, write, None, background=background)

    def exclude_open_of(self, run_id: str, reason: str, *, background: bool) -> None:
        """Exclude every open pair of this guard that ``run_id`` is an arm of: the run ended without an outcome,
        so they could never complete (see :meth:`critic_guard.guard.CriticGuard.abandon_run`)."""
        at = time.time()

        def write() -> None:
            for pair in self._records.pairs_of_run(run_id):
                if pair.guard_key != self.guard_key or pair.status is not PairStatus.OPEN:
                    continue
                with suppress(PairStateError):  # completed meanwhile by another replica: it counts as it is
                    if self._records.mark_incomplete(pair.pair_id, reason, initial=self._lifecycle.initial(), at=at):
                        self._lifecycle.invalidate()

        self._writes.critical("exclude_pairs", run_id, write, None, background=background)

    def pairs(self, status: PairStatus | str | None = None) -> list[PairRecord]:
        return self._records.pairs(self.guard_key, status)

    def complete_open(self) -> list[PairUpdate]:
        """See :meth:`critic_guard.guard.CriticGuard.complete_pairs`."""
        return self.complete(self._records.pairs(self.guard_key, PairStatus.OPEN))

    def complete_with(self, run_id: str) -> list[PairUpdate]:
        """Complete this guard's open pairs of ``run_id`` that now have both outcomes."""
        pairs = self._records.pairs_of_run(run_id)
        return self.complete(p for p in pairs if p.guard_key == self.guard_key and p.status is PairStatus.OPEN)

    def complete(self, pairs: Iterable[PairRecord]) -> list[PairUpdate]:
        """Complete each pair whose runs both have outcomes (one transaction each, with the lifecycle rule)."""
        updates = []
        for pair in pairs:
            now = time.time()
            apply = functools.partial(apply_pair, mode=self.config.mode, config=self.config, now=now)
            update = self._records.complete_pair(pair.pair_id, apply, self._lifecycle.initial(), at=now)
            if update is None:
                continue
            updates.append(update)
            self._lifecycle.remember(update.guard)
            if update.transition is not None:
                logger.info(
                    "guard %r: %s -> %s (%s)",
                    self.guard_key,
                    update.transition.from_state.value,
                    update.transition.to_state.value,
                    update.transition.reason,
                )
            self._events.pair_completed(update)
        return updates
