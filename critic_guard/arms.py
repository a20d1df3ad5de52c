"""``ArmRules``: which arm acts in which mode, which arm production serves, and when a run forks a shadow branch.

This is the one place that maps (mode, lifecycle state, arm) to behaviour (docs/pilot-design.md, docs/lifecycle.md),
so that the integrations never decide it themselves. The rules are plain reads of the config and of the lifecycle
record; the record is asked for lazily (``record()``), because only AUTO needs it and reading it, even from the
cache, is the one cost on the hot path.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from typing import Final

from critic_guard.config import GuardConfig
from critic_guard.lifecycle import GuardRecord, GuardState, paused_after_budget
from critic_guard.policy import Decision, Reason
from critic_guard.types import Action, Arm, Mode

__all__ = ["DISABLED_REASON", "ArmRules", "fraction_hit"]

DISABLED_REASON: Final = Reason.GUARD_DISABLED
"""Decision reason for a flag on the treatment arm while the AUTO lifecycle has disabled intervention (the
:class:`~critic_guard.policy.Reason` member, under the name ``critic_guard.guard`` has exported)."""


def fraction_hit(key: str, fraction: float) -> bool:
    """A deterministic coin with P(True) = ``fraction`` for ``key``: every replica flips the same way."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0**64


class ArmRules:
    """The mode/arm rules of one guard. ``record`` returns its current (cached) lifecycle record."""

    def __init__(self, config: GuardConfig, guard_key: str, record: Callable[[], GuardRecord]) -> None:
        self.config = config
        self.guard_key = guard_key
        self._record = record
        self._coin = random.Random(guard_key)  # fraction coins for callers that give no run id
        self._coin_lock = threading.Lock()

    def acts(self, arm: Arm) -> bool:
        """See :meth:`critic_guard.guard.CriticGuard.acts`."""
        mode = self.config.mode
        if mode is Mode.ON:
            return True
        if mode is Mode.PILOT:
            return arm == Arm.TREATMENT  # == so a plain "treatment" string works too
        if mode is Mode.AUTO:
            return arm == Arm.TREATMENT and self._record().state is not GuardState.DISABLED
        return False

    def decide_for(self, decision: Decision, arm: Arm) -> Decision:
        """The policy's ``decision`` as ``arm`` takes it: a flag on an arm that may not act is kept (it is
        evidence) but its action is NONE, with the reason why it did not act."""
        if decision.flagged and not self.acts(arm):
            return Decision(True, Action.NONE, None, self._not_acting_reason(arm))
        return decision

    def _not_acting_reason(self, arm: Arm) -> str:
        mode = self.config.mode
        if mode is Mode.OBSERVE:
            return Reason.OBSERVE
        if mode is Mode.AUTO and arm == Arm.TREATMENT:
            return Reason.GUARD_DISABLED
        return Reason.CONTROL_ARM

    def serve_arm(self) -> Arm:
        """See :meth:`critic_guard.guard.CriticGuard.serve_arm`."""
        mode = self.config.mode
        if mode is Mode.ON:
            return Arm.TREATMENT
        if mode is Mode.PILOT:
            return self.config.serve
        if mode is Mode.AUTO:
            record = self._record()
            if record.state is GuardState.ENABLED:
                return Arm.TREATMENT
            if record.state is GuardState.DISABLED or paused_after_budget(record, self.config):
                return Arm.CONTROL
            return self.config.serve
        return Arm.CONTROL

    def should_fork(self, run_id: str | None) -> bool:
        """See :meth:`critic_guard.guard.CriticGuard.should_fork`."""
        if self.config.design != "fork":
            return False
        mode = self.config.mode
        if mode is Mode.PILOT:
            return True
        if mode is not Mode.AUTO:
            return False
        record = self._record()
        if record.state is GuardState.PILOT:
            return not paused_after_budget(record, self.config)
        return record.state is GuardState.ENABLED and self._coin_for("shadow", run_id, self.config.shadow_fraction)

    def should_fork_aa(self, run_id: str | None) -> bool:
        """See :meth:`critic_guard.guard.CriticGuard.should_fork_aa`."""
        mode = self.config.mode
        if self.config.design != "fork" or mode not in (Mode.PILOT, Mode.AUTO):
            return False
        if mode is Mode.AUTO:
            record = self._record()
            if record.state is GuardState.DISABLED or paused_after_budget(record, self.config):
                return False
        return self._coin_for("aa", run_id, self.config.aa_fraction)

    def _coin_for(self, purpose: str, run_id: str | None, fraction: float) -> bool:
        if run_id is None:
            with self._coin_lock:
                return self._coin.random() < fraction
        return fraction_hit(f"{purpose}\x00{self.guard_key}\x00{run_id}", fraction)
