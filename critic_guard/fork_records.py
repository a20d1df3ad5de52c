"""``ForkRecords``: a shadow branch's run and its pair, recorded before the branch starts, or the branch does not
start.

Why both or neither: a branch whose pair is not recorded would run for nothing, and a pair without its branch's run
could never complete. Both writes are queued in order ahead of every write of the branch itself (docs/faults.md,
"Forks"); when they cannot even be queued, the fork is counted (``counters.forks_skipped``, by reason) and listed
as a lost write of the production run's task, so a pilot runs that task again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from critic_guard.critic_pool import describe_error
from critic_guard.guard_counters import Tally
from critic_guard.pair_book import PairBook
from critic_guard.run_recorder import RunRecorder
from critic_guard.store.base import PairKind
from critic_guard.store_writes import StoreWrites
from critic_guard.types import Arm

__all__ = ["ForkRecords"]


class ForkRecords:
    """Records the forks of one guard (see the module docstring)."""

    def __init__(self, runs: RunRecorder, pairs: PairBook, writes: StoreWrites, tally: Tally) -> None:
        self._runs = runs
        self._pairs = pairs
        self._writes = writes
        self._tally = tally

    def begin(
        self,
        *,
        pair_id: str,
        branch_run_id: str,
        arm: Arm,
        control_run_id: str,
        treatment_run_id: str,
        parent_run_id: str,
        fork_step: int,
        task: Mapping[str, Any] | None,
        kind: PairKind | str,
        fork_checkpoint_id: str | None,
        background: bool,
    ) -> bool:
        """See :meth:`critic_guard.guard.CriticGuard.begin_fork`. Never raises."""
        reason = None if self._writes.accepting(2) else "store unavailable: the write queue is full"
        if reason is None:
            try:
                self._runs.start(
                    run_id=branch_run_id,
                    task=task,
                    arm=arm,
                    parent_run_id=parent_run_id,
                    fork_step=fork_step,
                    conversation_id=None,
                    trace_parent=None,
                    background=background,
                )
                self._pairs.open(
                    pair_id,
                    control_run_id=control_run_id,
                    treatment_run_id=treatment_run_id,
                    flagged=True,
                    fork_step=fork_step,
                    task_id=None,
                    kind=kind,
                    design=None,
                    fork_checkpoint_id=fork_checkpoint_id,
                    background=background,
                )
            except Exception as exc:
                reason = f"fork not recorded: {describe_error(exc)}"
        if reason is None:
            return True
        self._tally.fork_skipped(reason)
        self._writes.note_lost("fork", parent_run_id, reason)
        return False
