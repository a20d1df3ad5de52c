"""``CriticGuard``: the framework-neutral core that integrations call once per agent step.

It ties a critic, a policy and a store together: ``review`` asks the critic about the proposed step (with a
timeout), lets the policy decide, records the verdict and decision, and returns a :class:`StepReview` that the
integration acts on. It never breaks the agent: a failing, slow or malformed critic gives "no intervention" plus a
recorded ``critic_error`` (fail open), and a failing store write is logged and counted, not raised.

The state that must survive checkpoints and forks (how many interventions this run had, and when the last one was)
lives in the agent's state, so the integration passes it to ``review``; the guard keeps only an attempt counter per
recent run (bounded, in memory) to number retries of the same step.

Pilots and the lifecycle (docs/pilot-design.md, docs/lifecycle.md): the guard opens *pairs* of runs, completes them
when outcomes arrive (one atomic store operation per pair, shared by all replicas), and in ``auto`` mode follows
the lifecycle state (pilot -> enabled / disabled) that the pure rule in :mod:`critic_guard.lifecycle` derives from
the sequential monitor. The state is cached for ``lifecycle_ttl_s`` so that :meth:`CriticGuard.acts` on the hot
path costs a clock read, not a store query. Without a store (``store=None``) the same code runs on a private
in-memory SQLite database: the same transactions, nothing persisted.

Faults (docs/faults.md): every store call the guard makes waits at most ``store_wait_s`` for a busy or unreachable
store, then fails open. A run, outcome or pair write that failed so is not dropped: it goes to a
:class:`~critic_guard.write_queue.WriteQueue` that retries it, in order, off the user's path; what still fails
is counted (``counters.store_lost``) and listed (:meth:`CriticGuard.lost_writes`).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar, cast

from critic_guard.at_rest import error_text, task_record
from critic_guard.config import GuardConfig
from critic_guard.critic_loop import CriticLoop
from critic_guard.critic_pool import CriticPool, ajudge_with_timeout, describe_error, judge_with_timeout
from critic_guard.critics import Critic, as_critic
from critic_guard.lifecycle import (
    ACTOR_HUMAN,
    GuardRecord,
    GuardState,
    Transition,
    apply_pair,
    override,
    paused_after_budget,
)
from critic_guard.policy import Decision, Policy, Reason
from critic_guard.store.base import (
    OutcomeConflictError,
    PairConflictError,
    PairDesign,
    PairKind,
    PairRecord,
    PairStateError,
    PairStatus,
    PairUpdate,
    RunEnd,
    RunRecord,
    StepRecord,
    Store,
    UnknownPairError,
    UnknownRunError,
    open_store,
)
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.telemetry.runs import RunTraces
from critic_guard.telemetry.tracing import GuardTelemetry, StepTrace
from critic_guard.types import Action, Arm, Mode, StepContext, Verdict
from critic_guard.write_queue import Batch, LostWrite, WriteQueue

__all__ = ["DISABLED_REASON", "CriticGuard", "EventKind", "GuardCounters", "GuardEvent", "Listener", "StepReview"]

logger = logging.getLogger("critic_guard")

_MAX_TRACKED_RUNS = 10_000
_FORGET_EVERY = 1_000  # without a store: every this many new runs, forget all but the newest _MAX_TRACKED_RUNS
_MODE_OFF = Decision(False, Action.NONE, None, Reason.MODE_OFF)
_CRITIC_ERROR = Decision(False, Action.NONE, None, Reason.CRITIC_ERROR)
DISABLED_REASON = "guard_disabled"
"""Decision reason for a flag on the treatment arm while the AUTO lifecycle has disabled intervention."""
_PERMANENT = (
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


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET
_T = TypeVar("_T")


def _current(span: StepTrace | None) -> AbstractContextManager[object]:
    """Make the step span current around the critic call (only when it records: otherwise nothing to nest)."""
    return span.activate() if span is not None and span.is_recording else nullcontext()


@dataclass(frozen=True, slots=True)
class StepReview:
    """The guard's answer for one step: the verdict (None on critic error), the decision, and the critic latency."""

    run_id: str
    step: int
    verdict: Verdict | None
    decision: Decision
    critic_error: str | None
    latency_s: float

    @property
    def action(self) -> Action:
        return self.decision.action


class EventKind(StrEnum):
    """What a :class:`GuardEvent` reports."""

    VERDICT = "verdict"  # every review (``review.verdict`` is None after a critic error)
    INTERVENTION = "intervention"  # a review whose action is not NONE (also reported as a verdict)
    PAIR_COMPLETED = "pair_completed"  # a pair this guard completed (``update``)
    TRANSITION = "transition"  # a lifecycle transition this guard made (``transition``)


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """One event for listeners (telemetry, dashboards); exactly the field that matches ``kind`` is set."""

    kind: EventKind
    guard_key: str
    review: StepReview | None = None
    update: PairUpdate | None = None
    transition: Transition | None = None


Listener = Callable[[GuardEvent], object]
"""A callable that receives every :class:`GuardEvent`; it runs inline, so it must be quick and must not block."""


@dataclass(frozen=True, slots=True)
class GuardCounters:
    """A snapshot of what the guard did since it was created (process-local; the store has the full record).

    ``late_verdicts``: verdicts that arrived after their step had gone on at the deadline (each step was also a
    critic error; the late verdict is never acted on). ``lost_steps``: step rows the store accepted but could not
    write (e.g. a value the database refused; other rows of the same batch are still written). It is the store's
    count, so guards sharing one store see the same number.
    """

    verdicts: int
    flags: int
    interventions: Mapping[Action, int]
    critic_errors: int
    store_errors: int
    listener_errors: int = 0
    telemetry_errors: int = 0
    late_verdicts: int = 0
    lost_steps: int = 0
    shadow_stops: int = 0  # shadow branches stopped before a tool they may not run (their pairs are excluded)
    store_deferred: int = 0  # run, outcome and pair writes handed to the background retry queue
    store_recovered: int = 0  # of those, written by a retry
    store_lost: int = 0  # writes that could not be made even by retrying (see CriticGuard.lost_writes)
    forks_skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # branches not started
    critic_queued: int = 0  # critic calls that waited for a free worker (raise critic_workers if this grows)

    @property
    def total_interventions(self) -> int:
        return sum(self.interventions.values())


@dataclass(slots=True)
class _RunState:
    last_step: int = -1
    attempt: int = 0
    task_id: str | None = None  # names the task of a lost write


def _on_event_loop() -> bool:
    """Whether this thread is running an event loop (where no call may block, docs/faults.md)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _RunWrite:
    """A background run start or end (``op``), batched with its neighbours by the writer thread."""

    guard: CriticGuard
    op: RunRecord | RunEnd

    def __call__(self) -> None:
        self.guard._bounded(functools.partial(self.guard._ledger.write_runs, [self.op]))


@dataclass(frozen=True, slots=True)
class _TracedOutcome:
    """A background outcome write; the run's span ends after its first attempt, so the outcome lands on it."""

    guard: CriticGuard
    run_id: str
    success: bool
    status: str

    def __call__(self) -> None:
        try:
            self.guard._record_outcome(self.run_id, self.success)
        finally:
            self.guard._trace(self.guard._traces.end_run, self.run_id, self.status)  # idempotent on retries


def _fraction_hit(key: str, fraction: float) -> bool:
    """A deterministic coin with P(True) = ``fraction`` for ``key``: every replica flips the same way."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2.0**64


class CriticGuard:
    """Judge each step of an agent run with a critic and decide whether to intervene.

    ``CriticGuard(critic, config, store=..., **overrides)``: ``overrides`` are :class:`GuardConfig` fields, e.g.
    ``CriticGuard(fn, mode="on", policy=Policy(tau=0.5))``. A :class:`Store` passed as ``store`` is used instead
    of ``config.store`` and is not closed by :meth:`close` (its owner closes it); a str or None passed as ``store``
    is the ``GuardConfig.store`` URL override (None: persist nothing; runs, pairs and the lifecycle then live in a
    private in-memory database, which keeps the newest 10,000 runs and the lifecycle record).

    ``telemetry`` (default: a :class:`~critic_guard.telemetry.GuardTelemetry` on the global OpenTelemetry
    providers, a no-op until the application or ``configure_telemetry`` installs one) receives one trace per run,
    a span per judged step with the verdict and intervention events, outcomes, pair cells, monitor wealth and
    lifecycle transitions (DESIGN.md §7). Telemetry failures are logged and counted, never raised.
    """

    def __init__(
        self,
        critic: Critic | Callable[..., Any],
        config: GuardConfig | None = None,
        *,
        store: Store | str | _Unset | None = _UNSET,
        telemetry: GuardTelemetry | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(store, str) or store is None:  # `store` doubles as the GuardConfig field (a URL or None)
            overrides["store"] = store
        base = config if config is not None else GuardConfig()
        self.config: GuardConfig = GuardConfig.model_validate({**dict(base), **overrides}) if overrides else base
        self.critic: Critic = as_critic(critic)
        self.policy: Policy = self.config.policy
        self.guard_key = f"{self.config.agent_name}/{self.critic.name}/{self.policy.fingerprint()}"
        self._owns_store = not isinstance(store, Store)
        self.store: Store | None = store if isinstance(store, Store) else open_store(self.config.store)
        # Runs, outcomes, pairs and the lifecycle go to the store, or without one to a private in-memory database
        # (the same code and transactions; steps are not kept there).
        self._memory: SQLiteStore | None = None
        self._ledger: Store
        if self.store is None:
            self._ledger = self._memory = SQLiteStore(":memory:")
        else:
            self._ledger = self.store
        self._started = 0
        self._pool = CriticPool(self.config.critic_workers, name=f"critic-guard-{self.config.agent_name}")
        self._critic_loop = CriticLoop(f"critic-guard-{self.config.agent_name}-loop", on_blocked=self._loop_blocked)
        self._late_verdicts = 0
        self._critic_queued = 0
        self._loop_block_warned = False
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _RunState] = OrderedDict()
        self._verdicts = self._flags = self._critic_errors = self._store_errors = self._listener_errors = 0
        self._interventions = dict.fromkeys((Action.ROLLBACK, Action.APPEND), 0)
        self._listeners: tuple[Listener, ...] = ()
        self._cached: GuardRecord | None = None
        self._cached_until = 0.0
        self._alpha_warned = False
        self._coin = random.Random(self.guard_key)  # fraction coins for callers that give no run id
        self._closed = False
        # background work of integrations (sync drain, async drain), finished first by close() / aclose()
        self._drains: list[tuple[Callable[[], object], Callable[[], Awaitable[object]] | None]] = []
        self.telemetry = telemetry or GuardTelemetry(capture_content=self.config.capture_content)
        self._traces = RunTraces(
            self.telemetry, agent_name=self.config.agent_name, guard_key=self.guard_key, mode=self.config.mode
        )
        self._telemetry_errors = 0
        self._shadow_stops = 0
        self._writes = WriteQueue(
            retry_for_s=self.config.store_retry_s,
            permanent=_PERMANENT,
            name=f"critic-guard-writes-{self.guard_key}",
            on_failure=self._store_failed,
        )
        self._run_writes = Batch(self._write_runs)
        self._ledger.add_reader_barrier(self._writes.settle)  # readers in this process see the queued writes
        self._refreshing = threading.Event()  # a background lifecycle read is under way
        self._forks_skipped: dict[str, int] = {}
        if self.config.mode is Mode.AUTO:
            self._refresh()  # warm the cache (and the statistics import) before the first step

    # -- modes and the lifecycle -------------------------------------------------------------------------------

    def acts(self, arm: Arm) -> bool:
        """Whether a run in ``arm`` may intervene: the single place that maps mode, lifecycle and arm to acting.

        ON acts on every arm; OFF and OBSERVE never act; PILOT acts on the treatment arm only; AUTO acts on the
        treatment arm while the lifecycle is pilot or enabled (when enabled, production runs *are* treatment runs,
        see :meth:`serve_arm`, and a shadow control must stay a control), and never once it is disabled.
        """
        mode = self.config.mode
        if mode is Mode.ON:
            return True
        if mode is Mode.PILOT:
            return arm == Arm.TREATMENT  # == so a plain "treatment" string works too
        if mode is Mode.AUTO:
            return arm == Arm.TREATMENT and self._record().state is not GuardState.DISABLED
        return False

    def serve_arm(self) -> Arm:
        """The arm a new production run follows now.

        ON: treatment. OFF/OBSERVE: control. PILOT: ``config.serve``. AUTO: ``config.serve`` during the pilot,
        treatment once enabled, control once disabled. The shadow branch of a pair runs the other arm.
        """
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

    def should_fork(self, run_id: str | None = None) -> bool:
        """Whether a run's first flag should fork a shadow branch of the other arm (``design="fork"`` only).

        PILOT and AUTO-pilot: always. AUTO-enabled: for ``shadow_fraction`` of runs, so the monitor keeps learning
        (a shadow control beside the treatment production run). Otherwise never. With a ``run_id`` the coin is a
        hash of the guard key and the run id, so every replica (and a resumed run) decides the same way.
        """
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

    def should_fork_aa(self, run_id: str | None = None) -> bool:
        """Whether a flagged run also forks an A/A shadow (a second branch of the served arm, rerun noise).

        For ``aa_fraction`` of runs in PILOT and in AUTO while not disabled (``design="fork"`` only); the coin is
        independent of :meth:`should_fork`'s.
        """
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
            with self._lock:
                return self._coin.random() < fraction
        return _fraction_hit(f"{purpose}\x00{self.guard_key}\x00{run_id}", fraction)

    def lifecycle(self) -> GuardRecord:
        """The guard's lifecycle record, read from the store now (state, monitor, counts, last transition)."""
        record = self._ledger.get_guard(self.guard_key) or self._initial_record()
        return self._remember(record)

    def set_state(
        self, state: GuardState | str, *, reason: str, actor: str = ACTOR_HUMAN, reset_monitor: bool = False
    ) -> Transition:
        """Override the lifecycle state (``critic-guard enable|disable``), atomically, with a recorded transition.

        Refused (:class:`~critic_guard.lifecycle.LifecycleError`) when it is the current state, or when a standing
        proof would revert it at the next pair, unless ``reset_monitor=True``, which starts fresh evidence at
        ``config.alpha`` (see :func:`critic_guard.lifecycle.override`).
        """
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

        record, transition = self._ledger.set_guard_state(self.guard_key, change, self._initial_record())
        self._remember(record)
        self._emit(EventKind.TRANSITION, transition=transition)
        self._trace(self._traces.transition, transition.from_state.value, transition.to_state.value, transition.reason)
        return transition

    def transitions(self) -> list[Transition]:
        """Every transition of this guard key, oldest first (from the store: all replicas' and humans')."""
        return self._ledger.transitions(self.guard_key)

    def _initial_record(self) -> GuardRecord:
        config = self.config
        return GuardRecord.start(self.guard_key, config.alpha, split=not config.alpha_per_side, now=time.time())

    def _record(self) -> GuardRecord:
        """The cached lifecycle record (the hot path: a clock read while fresh).

        When it is stale: read now (bounded by ``store_wait_s``) from a sync caller; on an event loop, keep the
        cached record and read in a background thread (no store read on the loop, docs/faults.md).
        """
        cached = self._cached
        if cached is not None and time.monotonic() < self._cached_until:
            return cached
        if cached is None or not _on_event_loop():
            return self._refresh()
        if not self._refreshing.is_set():
            self._refreshing.set()
            threading.Thread(target=self._refresh_in_background, name="critic-guard-lifecycle", daemon=True).start()
        return cached

    def _refresh_in_background(self) -> None:
        try:
            self._refresh()
        finally:
            self._refreshing.clear()

    def _refresh(self) -> GuardRecord:
        try:
            with self._ledger.wait_at_most(self.config.store_wait_s):
                record = self._ledger.get_guard(self.guard_key) or self._initial_record()
        except Exception as exc:  # keep acting on the last known state; fail safe to a fresh pilot
            self._store_failed(exc)
            record = self._cached or self._initial_record()
        return self._remember(record)

    def _remember(self, record: GuardRecord) -> GuardRecord:
        """Cache ``record`` unless a newer version is cached already; return the cached one."""
        with self._lock:
            if self._cached is None or record.version >= self._cached.version:
                self._cached = record
            self._cached_until = time.monotonic() + self.config.lifecycle_ttl_s
            cached = self._cached
            warn = not self._alpha_warned and (
                record.monitor.alpha != self.config.alpha or record.monitor.split == self.config.alpha_per_side
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
                self.config.alpha,
                self.config.alpha_per_side,
            )
        return cached

    # -- pairs -------------------------------------------------------------------------------------------------

    def open_pair(
        self,
        pair_id: str,
        *,
        control_run_id: str,
        treatment_run_id: str,
        flagged: bool,
        fork_step: int | None = None,
        task_id: str | None = None,
        kind: PairKind | str = PairKind.AB,
        design: PairDesign | str | None = None,
        fork_checkpoint_id: str | None = None,
        background: bool = False,
    ) -> PairRecord:
        """Open a pair (idempotent on ``pair_id``, the production run id) and return it as stored (as given, still
        open, when the store could not take it now and the write was queued for a retry, or when ``background``
        handed it to the guard's writer thread: see :meth:`start_run`).

        ``design`` defaults to ``config.design``; ``task_id`` to the control run's. One run for both arms means
        a task never flagged in the fork design (concordant by construction); a flagged pair and a ``full``
        design pair need two runs. If the runs already have outcomes the pair completes at once.
        """
        pair = PairRecord(
            pair_id=pair_id,
            guard_key=self.guard_key,
            control_run_id=control_run_id,
            treatment_run_id=treatment_run_id,
            flagged=flagged,
            created_at=time.time(),
            kind=PairKind(kind),
            design=PairDesign(self.config.design if design is None else design),
            task_id=task_id if task_id is not None else self._task_id_of(control_run_id),  # from memory: no wait
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
            known = pair if pair.task_id is not None else replace(pair, task_id=self._task_of(control_run_id))
            stored = self._ledger.open_pair(known)
            if stored.status is PairStatus.OPEN and self._complete([stored]):
                return self._ledger.get_pair(pair_id)
            return stored

        stored = self._critical("open_pair", control_run_id, write, pair, background=background)
        if fork_checkpoint_id is not None:
            self._trace(self._traces.fork_checkpoint, pair_id, fork_checkpoint_id)
        return stored

    def _task_of(self, run_id: str) -> str | None:
        with suppress(UnknownRunError):
            return self._ledger.get_run(run_id).task_id
        return None

    def mark_incomplete(self, pair_id: str, reason: str, *, background: bool = False) -> None:
        """Exclude an open pair whose shadow branch could not finish (reported, never fed to the monitor).

        Idempotent; marking a complete pair raises :class:`~critic_guard.store.PairStateError`. Queued for a retry
        when the store cannot take it now (the pair is then excluded once the store is back).
        """
        at = time.time()

        def write() -> None:
            if self._ledger.mark_incomplete(pair_id, reason, initial=self._initial_record(), at=at):
                with self._lock:
                    self._cached_until = 0.0  # the counts changed: read them again next time

        self._critical("mark_incomplete", pair_id, write, None, background=background)

    def count_shadow_stop(self) -> None:
        """Count a shadow branch stopped by the tool gate (``counters.shadow_stops``; its pair is excluded)."""
        with self._lock:
            self._shadow_stops += 1

    def pairs(self, status: PairStatus | str | None = None) -> list[PairRecord]:
        """This guard's pairs, oldest first, optionally only those with one status."""
        return self._ledger.pairs(self.guard_key, status)

    def complete_pairs(self) -> list[PairUpdate]:
        """Complete every open pair of this guard whose runs have outcomes (e.g. after a crash between recording
        an outcome and completing its pair). Safe to run on any replica at any time."""
        return self._complete(self._ledger.pairs(self.guard_key, PairStatus.OPEN))

    def _complete(self, pairs: Iterable[PairRecord]) -> list[PairUpdate]:
        updates = []
        for pair in pairs:
            now = time.time()
            apply = functools.partial(apply_pair, mode=self.config.mode, config=self.config, now=now)
            update = self._ledger.complete_pair(pair.pair_id, apply, self._initial_record(), at=now)
            if update is None:
                continue
            updates.append(update)
            self._remember(update.guard)
            self._emit(EventKind.PAIR_COMPLETED, update=update)
            self._trace(self._traces.pair_completed, update)
            if update.transition is not None:
                logger.info(
                    "guard %r: %s -> %s (%s)",
                    self.guard_key,
                    update.transition.from_state.value,
                    update.transition.to_state.value,
                    update.transition.reason,
                )
                self._emit(EventKind.TRANSITION, transition=update.transition)
        return updates

    # -- listeners ---------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every :class:`GuardEvent` of this guard (inline: keep it quick).

        A listener that raises is logged (once) and counted in ``counters.listener_errors``; the agent goes on.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; ``ValueError`` if it was not added."""
        with self._lock:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def _emit(
        self,
        kind: EventKind,
        *,
        review: StepReview | None = None,
        update: PairUpdate | None = None,
        transition: Transition | None = None,
    ) -> None:
        listeners = self._listeners
        if not listeners:
            return
        event = GuardEvent(kind, self.guard_key, review, update, transition)
        for listener in listeners:
            try:
                listener(event)
            except Exception as exc:
                with self._lock:
                    self._listener_errors += 1
                    first = self._listener_errors == 1
                if first:
                    logger.warning("critic-guard listener %r failed (logged once)", listener, exc_info=exc)

    # -- runs --------------------------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        run_id: str | None = None,
        task: Mapping[str, Any] | None = None,
        arm: Arm = Arm.CONTROL,
        parent_run_id: str | None = None,
        fork_step: int | None = None,
        conversation_id: str | None = None,
        trace_parent: Any = None,
        background: bool = False,
    ) -> str:
        """Register a run and return its id (a new uuid4 hex if none is given). Starting a known id is harmless.

        ``task`` is stored as JSON (non-JSON values as their ``str``), reduced to what may be kept at rest: its ids
        and the ``task_fields`` allowlist, or everything (redacted) with content capture on and no allowlist
        (:func:`~critic_guard.at_rest.task_record`). Its ``task_id`` (or ``id``) key becomes the run's ``task_id``,
        which pairs runs of the same task. A run with a ``parent_run_id`` is a shadow branch
        forked from that run at ``fork_step``: its trace links to the parent's span of that step.
        ``conversation_id`` (e.g. the LangGraph thread id) goes on the run span; ``trace_parent`` (an OTel span or
        a ``traceparent`` string) parents a production run's span when the caller's instrumentation does not make
        its span current (OpenInference).

        ``background=True`` (what the integrations pass on the user's path, sync and async alike): the write is
        handed to the guard's writer thread and this returns at once, without touching the store (no blocking call
        on an event loop). The writer applies it in order with the guard's other writes (so the run exists before
        its pair is opened or counted), batched with neighbouring run starts and ends, and retries it like any
        failed write (docs/faults.md).
        """
        run_id = run_id or uuid.uuid4().hex
        task_map = dict(task) if task else None
        task_id = None if task_map is None else task_map.get("task_id", task_map.get("id"))
        with self._lock:
            self._track(run_id).task_id = None if task_id is None else str(task_id)
            self._started += 1
            forget = self._memory is not None and self._started % _FORGET_EVERY == 0
        if forget and self._memory is not None:  # on the user's path: bounded and fail-open like every store call
            try:
                self._bounded(functools.partial(self._memory.forget_old_runs, _MAX_TRACKED_RUNS))
            except Exception as exc:
                self._store_failed(exc)
        record = RunRecord(
            run_id=run_id,
            guard_key=self.guard_key,
            agent_name=self.config.agent_name,
            arm=Arm(arm),
            started_at=time.time(),
            task_id=None if task_id is None else str(task_id),
            task=None if task_map is None else self.task_record(task_map),
            parent_run_id=parent_run_id,
            fork_step=fork_step,
        )
        if background:
            self._background("start_run", run_id, _RunWrite(self, record), batch=self._run_writes)
        else:
            self._critical("start_run", run_id, functools.partial(self._ledger.add_run, record), False)
        self._trace(
            self._traces.start_run,
            run_id,
            record.arm,
            conversation_id=conversation_id,
            parent_run_id=parent_run_id,
            fork_step=fork_step,
            parent=trace_parent,
        )
        return run_id

    def task_record(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``task`` this guard's store keeps (docs/telemetry.md, "What the store keeps")."""
        return task_record(task, fields=self.config.task_fields, content=self.telemetry.content)

    def error_text(self, exc: BaseException) -> str:
        """The description of ``exc`` this guard's store keeps: its type alone with content capture off (the
        message may quote tool arguments), ``"Type: message"`` through the redaction hook with it on."""
        return error_text(exc, self.telemetry.content)

    def end_run(
        self, run_id: str, *, status: str = "completed", success: bool | None = None, background: bool = False
    ) -> list[PairUpdate]:
        """Mark a run ended, and record its outcome if ``success`` is given (returning the pair updates).

        ``status``: ``completed``, ``incomplete`` (a shadow branch stopped by the tool gate) or ``failed``. A store
        that cannot take the writes now gets them later (queued; the updates are then empty). ``background``: see
        :meth:`start_run` (the updates are then empty; the run's span ends once its outcome is written).
        """
        if background:
            self._background(
                "end_run", run_id, _RunWrite(self, RunEnd(run_id, status, time.time())), batch=self._run_writes
            )
            if success is None:
                self._trace(self._traces.end_run, run_id, status)
            else:
                self._check_success(success)
                outcome = _TracedOutcome(self, run_id, success, status)
                self._background("record_outcome", run_id, outcome)
            return []
        write = functools.partial(self._ledger.end_run, run_id, status=status, ended_at=time.time())
        try:
            self._critical("end_run", run_id, write, None)
        except UnknownRunError:
            raise UnknownRunError(f"unknown run id {run_id!r}: start it with guard.start_run() first") from None
        updates = [] if success is None else self.record_outcome(run_id, success)
        self._trace(self._traces.end_run, run_id, status)  # after the outcome, so it lands on the open span
        return updates

    def record_outcome(self, run_id: str, success: bool) -> list[PairUpdate]:
        """Record whether the run succeeded and complete every open pair of this guard that now has both outcomes.

        Idempotent: the same value again records nothing new (and completes any pair a crash left open); the
        other value raises :class:`~critic_guard.store.OutcomeConflictError`; an unknown run raises
        :class:`UnknownRunError` (a ``KeyError``). Returns the pair updates this call made (empty when another
        replica completed the pair, or when the other arm's outcome is still missing, or when the store could not
        take the outcome now and it was queued for a retry).
        """
        self._check_success(success)
        updates: list[PairUpdate] = self._critical(
            "record_outcome", run_id, functools.partial(self._record_outcome, run_id, success), []
        )
        return updates

    @staticmethod
    def _check_success(success: object) -> None:
        if not isinstance(success, bool):
            raise TypeError(f"success must be a bool, got {type(success).__name__}")

    def _record_outcome(self, run_id: str, success: bool) -> list[PairUpdate]:
        try:
            self._ledger.record_outcome(run_id, success, recorded_at=time.time())
        except UnknownRunError:
            raise UnknownRunError(
                f"unknown run id {run_id!r}: no run with this id was started (guard.start_run) in this store"
            ) from None
        pairs = self._ledger.pairs_of_run(run_id)
        updates = self._complete(p for p in pairs if p.guard_key == self.guard_key and p.status is PairStatus.OPEN)
        if not updates:  # otherwise each completed pair traced the outcome with its cell
            self._trace(self._traces.outcome, run_id, success)
        return updates

    def begin_fork(
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
        kind: PairKind | str = PairKind.AB,
        fork_checkpoint_id: str | None = None,
        background: bool = False,
    ) -> bool:
        """Record a shadow branch before it starts: its run, and its (flagged) pair with the production run.

        ``background``: both writes go to the guard's writer thread (see :meth:`start_run`), in order, ahead of
        every write of the branch itself.

        True when the branch may start: both writes are in the store, or queued behind a busy store in order (the
        branch's own writes will queue behind them, so the pair completes once the store is back). False when they
        could not even be queued, or were refused: the branch must not start; it is counted in
        ``counters.forks_skipped`` with the reason and listed in :meth:`lost_writes` for the production run's task
        (its pair is missing, so a pilot runs that task again). Never raises.
        """
        reason = None if self._writes.accepting(2) else "store unavailable: the write queue is full"
        if reason is None:
            try:
                self.start_run(
                    run_id=branch_run_id,
                    task=task,
                    arm=arm,
                    parent_run_id=parent_run_id,
                    fork_step=fork_step,
                    background=background,
                )
                self.open_pair(
                    pair_id,
                    control_run_id=control_run_id,
                    treatment_run_id=treatment_run_id,
                    flagged=True,
                    fork_step=fork_step,
                    kind=kind,
                    fork_checkpoint_id=fork_checkpoint_id,
                    background=background,
                )
            except Exception as exc:
                reason = f"fork not recorded: {describe_error(exc)}"
        if reason is None:
            return True
        with self._lock:
            self._forks_skipped[reason] = self._forks_skipped.get(reason, 0) + 1
        self._writes.note_lost("fork", parent_run_id, self._task_id_of(parent_run_id), reason)
        return False

    def wait_for_writes(self, timeout: float | None = None, *, task_id: str | None = None) -> bool:
        """Wait until every queued run, outcome and pair write (only ``task_id``'s, if given) is written or lost;
        True if within ``timeout``."""
        return self._writes.wait(timeout, task_id=task_id)

    def lost_writes(self) -> tuple[LostWrite, ...]:
        """The run, outcome and pair writes this guard could not make, even by retrying (oldest first)."""
        return self._writes.lost

    # -- steps -------------------------------------------------------------------------------------------------

    def review(
        self, ctx: StepContext, *, interventions: int = 0, last_intervention_step: int | None = None
    ) -> StepReview:
        """Judge the proposed step in ``ctx`` and decide. Never raises because of the critic."""
        if self.config.mode is Mode.OFF:
            return StepReview(ctx.run_id, ctx.step, None, _MODE_OFF, None, 0.0)
        attempt, span = self._begin_step(ctx.run_id, ctx.step)
        verdict: Verdict | None = None
        error: BaseException | None = None
        started = time.perf_counter()
        try:
            with _current(span):
                verdict = judge_with_timeout(
                    self.critic,
                    ctx,
                    self.config.critic_timeout_s,
                    self._pool,
                    on_late=self._late,
                    on_queued=self._queued,
                )
        except Exception as exc:
            error = exc
        latency = time.perf_counter() - started
        return self._conclude(ctx, attempt, span, verdict, error, latency, interventions, last_intervention_step)

    async def areview(
        self, ctx: StepContext, *, interventions: int = 0, last_intervention_step: int | None = None
    ) -> StepReview:
        """Async :meth:`review`: the critic never runs on the caller's event loop while a deadline is set.

        A native-async critic runs on the guard's own event loop thread and a sync one in the worker pool, so a
        critic that ignores cancellation or blocks its loop cannot hold the step past ``critic_timeout_s``
        (:mod:`critic_guard.critic_loop`). The step row is only queued here (the store writes it in the background).
        """
        if self.config.mode is Mode.OFF:
            return StepReview(ctx.run_id, ctx.step, None, _MODE_OFF, None, 0.0)
        attempt, span = self._begin_step(ctx.run_id, ctx.step)
        verdict: Verdict | None = None
        error: BaseException | None = None
        started = time.perf_counter()
        try:
            with _current(span):
                verdict = await ajudge_with_timeout(
                    self.critic,
                    ctx,
                    self.config.critic_timeout_s,
                    self._pool,
                    self._critic_loop,
                    on_late=self._late,
                    on_queued=self._queued,
                )
        except Exception as exc:
            error = exc
        latency = time.perf_counter() - started
        return self._conclude(ctx, attempt, span, verdict, error, latency, interventions, last_intervention_step)

    def _begin_step(self, run_id: str, step: int) -> tuple[int, StepTrace | None]:
        """Number the attempt at this step and open its span (current during the critic call, so the critic's
        own LLM spans nest under it)."""
        with self._lock:
            attempt = self._next_attempt(run_id, step)
        return attempt, self._trace(self._traces.start_step, run_id, step, attempt)

    def _conclude(
        self,
        ctx: StepContext,
        attempt: int,
        span: StepTrace | None,
        verdict: Verdict | None,
        exc: BaseException | None,
        latency: float,
        interventions: int,
        last_intervention_step: int | None,
    ) -> StepReview:
        error = None if exc is None else describe_error(exc)
        if verdict is None:
            decision = _CRITIC_ERROR
        else:
            decision = self.policy.decide(
                verdict, step=ctx.step, interventions=interventions, last_intervention_step=last_intervention_step
            )
            if decision.flagged and not self.acts(ctx.arm):
                decision = Decision(True, Action.NONE, None, self._not_acting_reason(ctx.arm))
        with self._lock:
            if verdict is None:
                self._critic_errors += 1
                if self._critic_errors == 1:
                    logger.warning("critic %r failed, failing open (logged once): %s", self.critic.name, error)
            else:
                self._verdicts += 1
                self._flags += decision.flagged
                if decision.action is not Action.NONE:
                    self._interventions[decision.action] += 1
        review = StepReview(ctx.run_id, ctx.step, verdict, decision, error, latency)
        self._record_step(review, attempt, span, exc)
        if self._listeners:
            self._emit(EventKind.VERDICT, review=review)
            if decision.action is not Action.NONE:
                self._emit(EventKind.INTERVENTION, review=review)
        return review

    def record_fork_step(self, review: StepReview) -> None:
        """Record, in a shadow branch's own run, the fork step: the verdict judged in the production run and the
        decision the branch's arm takes there (no second critic call). Its span opens the branch's trace."""
        attempt, span = self._begin_step(review.run_id, review.step)
        self._record_step(review, attempt, span, None)

    def _record_step(self, review: StepReview, attempt: int, span: StepTrace | None, exc: BaseException | None) -> None:
        """The step's row in the store and its span (verdict or critic error, intervention).

        The row's rationale and error text follow the content switch, as the span's do (:mod:`critic_guard.at_rest`).
        """
        verdict, decision = review.verdict, review.decision
        content = self.telemetry.content
        if self.store is not None:
            record = StepRecord(
                run_id=review.run_id,
                step=review.step,
                attempt=attempt,
                p_fail=None if verdict is None else verdict.p_fail,
                label=None if verdict is None else verdict.label,
                rationale=None if verdict is None else content.text(verdict.rationale),
                flagged=decision.flagged,
                action=decision.action,
                reason=decision.reason,
                critic_error=None if exc is None else self.error_text(exc),
                latency_s=review.latency_s,
                created_at=time.time(),
            )
            self._soft_write(self.store.add_step, record)
        if span is not None:
            self._trace(
                self._traces.conclude_step,
                span,
                critic=self.critic.name,
                verdict=verdict,
                error_type=None if exc is None else type(exc).__qualname__,
                flagged=decision.flagged,
                action=decision.action,
                feedback=decision.feedback,
                tau=self.policy.tau,
            )

    def _not_acting_reason(self, arm: Arm) -> str:
        mode = self.config.mode
        if mode is Mode.OBSERVE:
            return Reason.OBSERVE
        if mode is Mode.AUTO and arm == Arm.TREATMENT:
            return DISABLED_REASON
        return Reason.CONTROL_ARM

    def _track(self, run_id: str) -> _RunState:
        """The in-memory state of a recent run (LRU, bounded). Call with ``self._lock`` held."""
        state = self._runs.get(run_id)
        if state is None:
            state = self._runs[run_id] = _RunState()
            if len(self._runs) > _MAX_TRACKED_RUNS:
                self._runs.popitem(last=False)
        else:
            self._runs.move_to_end(run_id)
        return state

    def _next_attempt(self, run_id: str, step: int) -> int:
        """0 for the first review of a step, 1, 2, ... for retries of the same step (after a ROLLBACK)."""
        state = self._track(run_id)
        state.attempt = state.attempt + 1 if step == state.last_step else 0
        state.last_step = step
        return state.attempt

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def _late(self, verdict: Verdict) -> None:
        """A verdict that came after its step went on: counted, never acted on (the step recorded a timeout)."""
        with self._lock:
            self._late_verdicts += 1
        logger.debug(
            "critic %r answered after its deadline (p_fail=%.3f); not acted on", self.critic.name, verdict.p_fail
        )

    def _queued(self) -> None:
        """A critic call waited for a worker: counted (``counters.critic_queued``), warned once. It is not lost:
        its timeout starts when a worker starts it (:mod:`critic_guard.critic_pool`)."""
        with self._lock:
            self._critic_queued += 1
            first = self._critic_queued == 1
        if first:
            logger.warning(
                "critic-guard: all %d critic workers are busy; steps wait for one (the wait does not count against "
                "critic_timeout_s). Raise GuardConfig.critic_workers if this goes on (counted in "
                "counters.critic_queued; logged once)",
                self._pool.max_workers,
            )

    def _loop_blocked(self, lag_s: float) -> None:
        with self._lock:
            first = not self._loop_block_warned
            self._loop_block_warned = True
        if first:
            logger.warning(
                "critic %r blocked its event loop for %.2fs (blocking code inside async def?); its steps go on at "
                "the deadline without a verdict. Set native_async = False on it to run it in the worker pool "
                "(logged once)",
                self.critic.name,
                lag_s,
            )

    def _critical(
        self, what: str, run_id: str, write: Callable[[], _T], default: _T, *, background: bool = False
    ) -> _T:
        """A run, outcome or pair write: now, waiting at most ``store_wait_s``; if that fails (or older writes are
        still queued, which it must not overtake), queued for retries off the caller's path and ``default`` is
        returned. Errors that say the write itself is wrong (``_PERMANENT``) are raised. ``background``: handed to
        the writer thread at once (``default`` is returned)."""
        if background:
            self._background(what, run_id, write)
            return default
        if self._writes.busy and not self._writes.retrying:  # background writes on their way: let them land first
            self._writes.settle(self.config.store_wait_s)
        if not self._writes.busy:
            try:
                return self._bounded(write)
            except _PERMANENT:
                raise
            except Exception as exc:
                self._store_failed(exc)
        self._writes.put(what, functools.partial(self._bounded, write), run_id=run_id, task_id=self._task_id_of(run_id))
        return default

    def _background(self, what: str, run_id: str, write: Callable[[], object], *, batch: Batch | None = None) -> None:
        """Hand ``write`` to the writer thread: its first attempt is made there, in order (docs/faults.md). A
        batched write bounds its own wait (``_RunWrite``)."""
        self._writes.put(
            what,
            write if batch is not None else functools.partial(self._bounded, write),
            run_id=run_id,
            task_id=self._task_id_of(run_id),
            tried=False,
            batch=batch,
        )

    def _write_runs(self, writes: list[Callable[[], object]]) -> None:
        """A batch of background run starts and ends, in one transaction (``_RunWrite`` items)."""
        ops = [cast("_RunWrite", write).op for write in writes]
        self._bounded(functools.partial(self._ledger.write_runs, ops))

    def _bounded(self, write: Callable[[], _T]) -> _T:
        with self._ledger.wait_at_most(self.config.store_wait_s):
            return write()

    def _task_id_of(self, run_id: str) -> str | None:
        """The task of a recent run (or of the production run a pair id names), from memory: for lost writes."""
        with self._lock:
            state = self._runs.get(run_id) or self._runs.get(run_id.split("~", 1)[0])
            return None if state is None else state.task_id

    def _soft_write(self, write: Callable[[Any], object], record: object) -> None:
        try:
            write(record)
        except Exception as exc:
            self._store_failed(exc)

    def _trace(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        """Run one telemetry call; a failure is logged (once) and counted, never raised into the agent."""
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            with self._lock:
                self._telemetry_errors += 1
                first = self._telemetry_errors == 1
            if first:
                logger.warning("critic-guard telemetry failed; the agent continues (logged once)", exc_info=exc)
            return None

    def _store_failed(self, exc: Exception) -> None:
        with self._lock:
            self._store_errors += 1
            first = self._store_errors == 1
        if first:  # one line: an outage is an operating condition, not a bug (the traceback is at debug level)
            logger.warning("critic-guard: store call failed, the agent goes on (logged once): %s", describe_error(exc))
        logger.debug("critic-guard store call failed", exc_info=exc)

    @property
    def counters(self) -> GuardCounters:
        lost_steps = 0 if self.store is None else self.store.lost_steps
        with self._lock:
            return GuardCounters(
                verdicts=self._verdicts,
                flags=self._flags,
                interventions=MappingProxyType(dict(self._interventions)),
                critic_errors=self._critic_errors,
                store_errors=self._store_errors,
                listener_errors=self._listener_errors,
                telemetry_errors=self._telemetry_errors,
                late_verdicts=self._late_verdicts,
                lost_steps=lost_steps,
                shadow_stops=self._shadow_stops,
                store_deferred=self._writes.queued,
                store_recovered=self._writes.recovered,
                store_lost=len(self._writes.lost),
                forks_skipped=MappingProxyType(dict(self._forks_skipped)),
                critic_queued=self._critic_queued,
            )

    def close(self) -> None:
        """Stop the worker pool, finish the queued writes (each within ``store_retry_s``), and close the store if
        this guard opened it. Idempotent."""
        if self._closed:
            return
        for drain, _ in tuple(self._drains):
            try:
                drain()
            except Exception:
                logger.exception("critic-guard: finishing background work at close failed")
        self._closed = True
        self._pool.shutdown()
        self._critic_loop.shutdown()
        self._writes.close()
        self._ledger.remove_reader_barrier(self._writes.settle)
        if self._owns_store:
            self._ledger.close()

    async def aclose(self) -> None:
        """Async :meth:`close`: await the integrations' async background work on this loop (``on_close(...,
        adrain)``), then finish the rest off the loop (nothing here blocks the event loop). Idempotent."""
        if self._closed:
            return
        for _, adrain in tuple(self._drains):
            if adrain is None:
                continue
            try:
                await adrain()
            except Exception:
                logger.exception("critic-guard: finishing background work at close failed")
        await asyncio.to_thread(self.close)

    def on_close(self, drain: Callable[[], object], adrain: Callable[[], Awaitable[object]] | None = None) -> None:
        """Have :meth:`close` call ``drain`` first (and :meth:`aclose` await ``adrain`` first): an integration's
        background work (verdicts judged off the user's path, their shadow branches) finishes while the critic pool
        and the store are still open."""
        self._drains.append((drain, adrain))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CriticGuard({self.guard_key!r}, mode={self.config.mode.value!r})"
