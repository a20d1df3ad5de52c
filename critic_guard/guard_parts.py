"""``GuardParts``: the parts behind one :class:`~critic_guard.guard.CriticGuard`, and who hears whom.

Why one place: a newcomer sees every part and what each is given here, and the guard itself only delegates.
Assembled once per guard, in dependency order: the counters (:class:`Tally`) first, since every part reports faults
to them; then the events, which the counters, the spans and the user's listeners hear in that order; the write path
over the guard's store; the lifecycle view over it; the arm rules over the lifecycle; pairs; runs (whose outcomes
complete pairs); forks (a branch's run and pair, recorded together); steps. Closing stops the critic workers, then
finishes the writes, then closes the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from critic_guard.arms import ArmRules
from critic_guard.config import GuardConfig
from critic_guard.critics import Critic
from critic_guard.fork_records import ForkRecords
from critic_guard.guard_counters import GuardCounters, Tally
from critic_guard.guard_events import GuardEvents, ListenerFanout
from critic_guard.guard_traces import GuardTraces
from critic_guard.lifecycle_view import LifecycleView
from critic_guard.pair_book import PairBook
from critic_guard.policy import Policy
from critic_guard.run_recorder import RecentRuns, RunRecorder
from critic_guard.step_reviewer import StepReviewer
from critic_guard.store_choice import GuardStores
from critic_guard.store_writes import StoreWrites
from critic_guard.telemetry.runs import RunTraces
from critic_guard.telemetry.tracing import GuardTelemetry

__all__ = ["GuardParts"]


@dataclass(frozen=True, slots=True)
class GuardParts:
    """The parts of one guard (see the module docstring for who depends on whom)."""

    stores: GuardStores
    tally: Tally
    listeners: ListenerFanout
    writes: StoreWrites
    lifecycle: LifecycleView
    arms: ArmRules
    pairs: PairBook
    runs: RunRecorder
    forks: ForkRecords
    steps: StepReviewer

    @classmethod
    def assemble(
        cls,
        critic: Critic,
        policy: Policy,
        config: GuardConfig,
        guard_key: str,
        stores: GuardStores,
        telemetry: GuardTelemetry,
    ) -> GuardParts:
        tally = Tally(critic.name)
        listeners = ListenerFanout(guard_key, on_error=tally.listener_failed)
        run_traces = RunTraces(telemetry, agent_name=config.agent_name, guard_key=guard_key, mode=config.mode)
        traces = GuardTraces(run_traces, critic_name=critic.name, tau=policy.tau, on_error=tally.telemetry_failed)
        events = GuardEvents([tally, traces, listeners])
        recent = RecentRuns()
        writes = StoreWrites(
            stores.records,
            wait_s=config.store_wait_s,
            retry_s=config.store_retry_s,
            name=f"critic-guard-writes-{guard_key}",
            task_of=recent.task_of,
            on_failure=tally.store_failed,
        )
        lifecycle = LifecycleView(config, guard_key, writes, events)
        arms = ArmRules(config, guard_key, lifecycle.record)
        pairs = PairBook(config, guard_key, writes=writes, lifecycle=lifecycle, events=events, task_of=recent.task_of)
        runs = RunRecorder(
            config,
            guard_key,
            writes=writes,
            pairs=pairs,
            events=events,
            recent=recent,
            memory=stores.memory,
            content=telemetry.content,
        )
        steps = StepReviewer(
            critic,
            policy,
            config,
            arms=arms,
            recent=recent,
            writes=writes,
            step_store=stores.persistent,
            traces=traces,
            events=events,
            tally=tally,
            content=telemetry.content,
        )
        forks = ForkRecords(runs, pairs, writes, tally)
        return cls(stores, tally, listeners, writes, lifecycle, arms, pairs, runs, forks, steps)

    def counters(self) -> GuardCounters:
        """The counts now (:class:`GuardCounters`), with the store's lost step rows and the write queue's counts."""
        persistent = self.stores.persistent
        lost_steps = 0 if persistent is None else persistent.lost_steps
        return self.tally.snapshot(lost_steps=lost_steps, writes=self.writes.queue)

    def close(self) -> None:
        """Stop the critic workers, finish the queued writes, and close the store if the guard opened it."""
        self.steps.shutdown()
        self.writes.close()
        if self.stores.owned:
            self.stores.records.close()
