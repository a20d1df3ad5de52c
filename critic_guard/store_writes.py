"""``StoreWrites``: how the guard writes runs, outcomes and pairs, never losing one nor blocking the user.

Why (docs/faults.md): the statistics rest on these rows, and the user's request must not wait for the store.

Three ways, one order. A write is made now, waiting at most ``store_wait_s`` (:meth:`StoreWrites.critical`); if the
store cannot take it then, or older writes are still queued (a write must not overtake them), it goes to the
:class:`~critic_guard.write_queue.WriteQueue`, which retries it in order off the caller's path. What the integrations
write on the user's path is handed to the queue's thread at once (:meth:`StoreWrites.background`), consecutive run
starts and ends batched in one transaction. Step rows are not critical: a failed one is counted, not retried
(:meth:`StoreWrites.soft`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from critic_guard.store.base import (
    OutcomeConflictError,
    PairConflictError,
    PairStateError,
    RunEnd,
    RunRecord,
    Store,
    UnknownPairError,
    UnknownRunError,
)
from critic_guard.write_queue import Batch, LostWrite, WriteQueue

__all__ = ["PERMANENT", "StoreWrites"]

_T = TypeVar("_T")

PERMANENT = (
    UnknownRunError,
    UnknownPairError,
    OutcomeConflictError,
    PairConflictError,
    PairStateError,
    TypeError,
    ValueError,
)
"""Store errors that say the write itself is wrong (raised to the caller, never retried); anything else a store
raises (locked, unreachable, timed out) is a fault worth retrying."""


@dataclass(frozen=True, slots=True)
class _RunWrite:
    """A background run start or end (``op``), batched with its neighbours by the writer thread."""

    writes: StoreWrites
    op: RunRecord | RunEnd

    def __call__(self) -> None:
        self.writes.bounded(functools.partial(self.writes.records.write_runs, [self.op]))


class StoreWrites:
    """The write path of one guard to ``records`` (its store, or its private in-memory one).

    ``task_of(run_id)`` names, from memory, the task of a run whose write is lost; ``on_failure`` counts (and logs)
    a failed store call.
    """

    def __init__(
        self,
        records: Store,
        *,
        wait_s: float,
        retry_s: float,
        name: str,
        task_of: Callable[[str], str | None],
        on_failure: Callable[[Exception], object],
    ) -> None:
        self.records = records
        self.wait_s = wait_s
        self._task_of = task_of
        self._on_failure = on_failure
        self.queue = WriteQueue(retry_for_s=retry_s, permanent=PERMANENT, name=name, on_failure=on_failure)
        self._runs = Batch(self._write_runs)
        records.add_reader_barrier(self.queue.settle)  # readers in this process see the queued writes

    def bounded(self, write: Callable[[], _T]) -> _T:
        """Call ``write`` while the store waits at most ``store_wait_s`` for a lock or a connection."""
        with self.records.wait_at_most(self.wait_s):
            return write()

    def critical(self, what: str, run_id: str, write: Callable[[], _T], default: _T, *, background: bool = False) -> _T:
        """A run, outcome or pair write: now, waiting at most ``store_wait_s``; if that fails (or older writes are
        still queued, which it must not overtake), queued for retries off the caller's path and ``default`` is
        returned. Errors that say the write itself is wrong (:data:`PERMANENT`) are raised. ``background``: handed
        to the writer thread at once (``default`` is returned)."""
        queue = self.queue
        if background:
            self.background(what, run_id, write)
            return default
        if queue.busy and not queue.retrying:  # background writes on their way: let them land first
            queue.settle(self.wait_s)
        if not queue.busy:
            try:
                return self.bounded(write)
            except PERMANENT:
                raise
            except Exception as exc:
                self.failed(exc)
        queue.put(what, functools.partial(self.bounded, write), run_id=run_id, task_id=self._task_of(run_id))
        return default

    def background(self, what: str, run_id: str, write: Callable[[], object]) -> None:
        """Hand ``write`` to the writer thread: its first attempt is made there, in order (docs/faults.md)."""
        self.queue.put(
            what, functools.partial(self.bounded, write), run_id=run_id, task_id=self._task_of(run_id), tried=False
        )

    def background_run(self, what: str, run_id: str, op: RunRecord | RunEnd) -> None:
        """A run start or end for the writer thread, written in one transaction with its neighbours."""
        write = _RunWrite(self, op)  # bounds its own wait
        self.queue.put(what, write, run_id=run_id, task_id=self._task_of(run_id), tried=False, batch=self._runs)

    def soft(self, write: Callable[[Any], object], record: object) -> None:
        """A write the statistics do not rest on (a step row): a failure is counted, not retried."""
        try:
            write(record)
        except Exception as exc:
            self.failed(exc)

    def failed(self, exc: Exception) -> None:
        """A store call failed and the caller goes on without it: counted (``counters.store_errors``), logged once."""
        self._on_failure(exc)

    def accepting(self, n: int) -> bool:
        """Whether ``n`` more writes can be queued now."""
        return self.queue.accepting(n)

    def note_lost(self, what: str, run_id: str, reason: str) -> None:
        """List a write that was never even queued (e.g. a fork not started) among the lost ones."""
        self.queue.note_lost(what, run_id, self._task_of(run_id), reason)

    def wait(self, timeout: float | None, *, task_id: str | None) -> bool:
        return self.queue.wait(timeout, task_id=task_id)

    @property
    def lost(self) -> tuple[LostWrite, ...]:
        return self.queue.lost

    def close(self) -> None:
        """Finish the queued writes (each within ``store_retry_s``) and stop the writer thread."""
        self.queue.close()
        self.records.remove_reader_barrier(self.queue.settle)

    def _write_runs(self, writes: list[Callable[[], object]]) -> None:
        """A batch of background run starts and ends, in one transaction (``_RunWrite`` items)."""
        ops = [cast("_RunWrite", write).op for write in writes]
        self.bounded(functools.partial(self.records.write_runs, ops))
