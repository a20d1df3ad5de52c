"""``LifecycleView``: one guard's lifecycle record (pilot / enabled / disabled), cached for the hot path.

The record lives in the store, shared by every replica (docs/lifecycle.md). Which arm acts is asked at every step,
so the view keeps the record for ``lifecycle_ttl_s``: while fresh, asking costs a clock read, not a store query.
A stale record is read again, within ``store_wait_s``, from a sync caller; on an event loop the cached one is kept
and a background thread reads the new one (no store read on the loop, docs/faults.md). A store that cannot answer
leaves the last known state in force (or a fresh pilot): the lifecycle fails safe, never into acting by surprise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from critic_guard.config import GuardConfig
from critic_guard.guard_events import GuardObserver
from critic_guard.lifecycle import ACTOR_HUMAN, GuardRecord, GuardState, Transition, override
from critic_guard.store.base import Store
from critic_guard.store_writes import StoreWrites

__all__ = ["LifecycleView"]

logger = logging.getLogger("critic_guard")


def _on_event_loop() -> bool:
    """Whether this thread is running an event loop (where no call may block, docs/faults.md)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LifecycleView:
    """The cached lifecycle record of ``guard_key`` in ``writes.records``; ``events`` hears transitions set here."""

    def __init__(self, config: GuardConfig, guard_key: str, writes: StoreWrites, events: GuardObserver) -> None:
        self.config = config
        self.guard_key = guard_key
        self._records: Store = writes.records
        self._writes = writes
        self._events = events
        self._lock = threading.Lock()
        self._cached: GuardRecord | None = None
        self._cached_until = 0.0
        self._alpha_warned = False
        self._refreshing = threading.Event()  # a background read is under way

    def initial(self) -> GuardRecord:
        """The record of a guard key the store has never seen: a pilot at ``config.alpha``."""
        config = self.config
        return GuardRecord.start(self.guard_key, config.alpha, split=not config.alpha_per_side, now=time.time())

    def record(self) -> GuardRecord:
        """The cached record (the hot path: a clock read while fresh)."""
        cached = self._cached
        if cached is not None and time.monotonic() < self._cached_until:
            return cached
        if cached is None or not _on_event_loop():
            return self.refresh()
        if not self._refreshing.is_set():
            self._refreshing.set()
            threading.Thread(target=self._refresh_in_background, name="critic-guard-lifecycle", daemon=True).start()
        return cached

    def read(self) -> GuardRecord:
        """The record read from the store now (unbounded: an operator's question, not the user's path)."""
        return self.remember(self._records.get_guard(self.guard_key) or self.initial())

    def refresh(self) -> GuardRecord:
        """Read the record now, waiting at most ``store_wait_s``; on failure keep the last known one."""
        try:
            record = self._writes.bounded(lambda: self._records.get_guard(self.guard_key)) or self.initial()
        except Exception as exc:  # keep acting on the last known state; fail safe to a fresh pilot
            self._writes.failed(exc)
            record = self._cached or self.initial()
        return self.remember(record)

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        finally:
            self._refreshing.clear()

    def invalidate(self) -> None:
        """The stored record changed behind the cache (e.g. a pair was excluded): read it again next time."""
        with self._lock:
            self._cached_until = 0.0

    def remember(self, record: GuardRecord) -> GuardRecord:
        """Cache ``record`` unless a newer version is cached already; return the cached one."""
        config = self.config
        with self._lock:
            if self._cached is None or record.version >= self._cached.version:
                self._cached = record
            self._cached_until = time.monotonic() + config.lifecycle_ttl_s
            cached = self._cached
            warn = not self._alpha_warned and (
                record.monitor.alpha != config.alpha or record.monitor.split == config.alpha_per_side
            )
            self._alpha_warned |= warn
        if warn:
            logger.warning(
                "guard %r: the stored monitor runs at alpha=%s (per side: %s), the config says alpha=%s "
                "(alpha_per_side=%s); the stored level holds until the monitor is reset "
                "(set_state(..., reset_monitor=True))",
                self.guard_key,
                record.monitor.alpha,
                not record.monitor.split,
                config.alpha,
                config.alpha_per_side,
            )
        return cached

    def set_state(
        self, state: GuardState | str, *, reason: str, actor: str = ACTOR_HUMAN, reset_monitor: bool = False
    ) -> Transition:
        """See :meth:`critic_guard.guard.CriticGuard.set_state`."""
        now = time.time()
        alpha, split = self.config.alpha, not self.config.alpha_per_side

        def change(record: GuardRecord) -> tuple[GuardRecord, Transition]:
            return override(
                record,
                state,
                reason=reason,
                actor=actor,
                reset_monitor=reset_monitor,
                alpha=alpha,
                split=split,
                now=now,
            )

        record, transition = self._records.set_guard_state(self.guard_key, change, self.initial())
        self.remember(record)
        self._events.transition(transition)
        return transition

    def transitions(self) -> list[Transition]:
        return self._records.transitions(self.guard_key)
