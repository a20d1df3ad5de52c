"""``CriticGuard``: the framework-neutral core that integrations call once per agent step.

It ties a critic, a policy and a store together: ``review`` asks the critic about the proposed step (with a
timeout), lets the policy decide, records the verdict and decision, and returns a :class:`StepReview` that the
integration acts on. It never breaks the agent: a failing, slow or malformed critic gives "no intervention" plus a
recorded ``critic_error`` (fail open), and a failing store write is logged and counted, not raised.

The state that must survive checkpoints and forks (how many interventions this run had, and when the last one was)
lives in the agent's state, so the integration passes it to ``review``; the guard keeps only an attempt counter per
recent run (bounded, in memory) to number retries of the same step.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Self

from critic_guard.config import GuardConfig
from critic_guard.critic_pool import CriticPool, ajudge_with_timeout, describe_error, judge_with_timeout
from critic_guard.critics import Critic, as_critic
from critic_guard.policy import Decision, Policy, Reason
from critic_guard.store.base import OutcomeConflictError, RunRecord, StepRecord, Store, UnknownRunError, open_store
from critic_guard.types import Action, Arm, Mode, StepContext, Verdict

__all__ = ["CriticGuard", "GuardCounters", "StepReview"]

logger = logging.getLogger("critic_guard")

_MAX_TRACKED_RUNS = 10_000
_MODE_OFF = Decision(False, Action.NONE, None, Reason.MODE_OFF)
_CRITIC_ERROR = Decision(False, Action.NONE, None, Reason.CRITIC_ERROR)


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET = _Unset.UNSET


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


@dataclass(frozen=True, slots=True)
class GuardCounters:
    """A snapshot of what the guard did since it was created (process-local; the store has the full record)."""

    verdicts: int
    flags: int
    interventions: Mapping[Action, int]
    critic_errors: int
    store_errors: int

    @property
    def total_interventions(self) -> int:
        return sum(self.interventions.values())


@dataclass(slots=True)
class _RunState:
    last_step: int = -1
    attempt: int = 0
    outcome: bool | None = None


class CriticGuard:
    """Judge each step of an agent run with a critic and decide whether to intervene.

    ``CriticGuard(critic, config, store=..., **overrides)``: ``overrides`` are :class:`GuardConfig` fields, e.g.
    ``CriticGuard(fn, mode="on", policy=Policy(tau=0.5))``. A :class:`Store` passed as ``store`` is used instead
    of ``config.store`` and is not closed by :meth:`close` (its owner closes it); a str or None passed as ``store``
    is the ``GuardConfig.store`` URL override (None: persist nothing).
    """

    def __init__(
        self,
        critic: Critic | Callable[..., Any],
        config: GuardConfig | None = None,
        *,
        store: Store | str | _Unset | None = _UNSET,
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
        self._pool = CriticPool(self.config.critic_workers, name=f"critic-guard-{self.config.agent_name}")
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _RunState] = OrderedDict()
        self._verdicts = self._flags = self._critic_errors = self._store_errors = 0
        self._interventions = dict.fromkeys((Action.ROLLBACK, Action.APPEND), 0)
        self._closed = False

    # -- modes -------------------------------------------------------------------------------------------------

    def acts(self, arm: Arm) -> bool:
        """Whether a run in ``arm`` may intervene: the single place that maps mode and arm to acting.

        ON acts on every arm; OFF and OBSERVE never act; PILOT and AUTO act on the treatment arm only (the AUTO
        lifecycle refines this in a later release).
        """
        mode = self.config.mode
        if mode is Mode.ON:
            return True
        if mode is Mode.PILOT or mode is Mode.AUTO:
            return arm == Arm.TREATMENT  # == so a plain "treatment" string works too
        return False

    # -- runs --------------------------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        run_id: str | None = None,
        task: Mapping[str, Any] | None = None,
        arm: Arm = Arm.CONTROL,
        parent_run_id: str | None = None,
        fork_step: int | None = None,
    ) -> str:
        """Register a run and return its id (a new uuid4 hex if none is given). Starting a known id is harmless.

        ``task`` is stored as JSON (non-JSON values as their ``str``); its ``task_id`` (or ``id``) key becomes the
        run's ``task_id``, which pairs runs of the same task.
        """
        run_id = run_id or uuid.uuid4().hex
        task_map = dict(task) if task else None
        task_id = None if task_map is None else task_map.get("task_id", task_map.get("id"))
        with self._lock:
            self._track(run_id)
        if self.store is not None:
            record = RunRecord(
                run_id=run_id,
                guard_key=self.guard_key,
                agent_name=self.config.agent_name,
                arm=Arm(arm),
                started_at=time.time(),
                task_id=None if task_id is None else str(task_id),
                task=task_map,
                parent_run_id=parent_run_id,
                fork_step=fork_step,
            )
            self._soft_write(self.store.add_run, record)
        return run_id

    def end_run(self, run_id: str, *, status: str = "completed", success: bool | None = None) -> None:
        """Mark a run ended (and record its outcome if ``success`` is given)."""
        if self.store is not None:
            try:
                self.store.end_run(run_id, status=status, ended_at=time.time())
            except UnknownRunError:
                raise
            except Exception as exc:
                self._store_failed(exc)
        elif run_id not in self._runs:
            raise UnknownRunError(f"unknown run id {run_id!r} (not started by this guard)")
        if success is not None:
            self.record_outcome(run_id, success)

    def record_outcome(self, run_id: str, success: bool) -> None:
        """Record whether the run succeeded. Idempotent for the same value; the other value raises
        :class:`OutcomeConflictError`; an unknown run raises :class:`UnknownRunError` (a ``KeyError``)."""
        if not isinstance(success, bool):
            raise TypeError(f"success must be a bool, got {type(success).__name__}")
        if self.store is not None:
            self.store.record_outcome(run_id, success, recorded_at=time.time())
            return
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:
                raise UnknownRunError(f"unknown run id {run_id!r} (not started by this guard)")
            if state.outcome is not None and state.outcome != success:
                raise OutcomeConflictError(f"run {run_id!r} already has outcome success={state.outcome}")
            state.outcome = success

    # -- steps -------------------------------------------------------------------------------------------------

    def review(
        self, ctx: StepContext, *, interventions: int = 0, last_intervention_step: int | None = None
    ) -> StepReview:
        """Judge the proposed step in ``ctx`` and decide. Never raises because of the critic."""
        if self.config.mode is Mode.OFF:
            return StepReview(ctx.run_id, ctx.step, None, _MODE_OFF, None, 0.0)
        verdict: Verdict | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            verdict = judge_with_timeout(self.critic, ctx, self.config.critic_timeout_s, self._pool)
        except Exception as exc:
            error = describe_error(exc)
        latency = time.perf_counter() - started
        return self._conclude(ctx, verdict, error, latency, interventions, last_intervention_step)

    async def areview(
        self, ctx: StepContext, *, interventions: int = 0, last_intervention_step: int | None = None
    ) -> StepReview:
        """Async :meth:`review`: awaits a native-async critic, runs a sync one off the event loop.

        The store write stays synchronous (about 20 µs for SQLite), which is cheaper than a thread hop.
        """
        if self.config.mode is Mode.OFF:
            return StepReview(ctx.run_id, ctx.step, None, _MODE_OFF, None, 0.0)
        verdict: Verdict | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            verdict = await ajudge_with_timeout(self.critic, ctx, self.config.critic_timeout_s, self._pool)
        except Exception as exc:
            error = describe_error(exc)
        latency = time.perf_counter() - started
        return self._conclude(ctx, verdict, error, latency, interventions, last_intervention_step)

    def _conclude(
        self,
        ctx: StepContext,
        verdict: Verdict | None,
        error: str | None,
        latency: float,
        interventions: int,
        last_intervention_step: int | None,
    ) -> StepReview:
        if verdict is None:
            decision = _CRITIC_ERROR
        else:
            decision = self.policy.decide(
                verdict, step=ctx.step, interventions=interventions, last_intervention_step=last_intervention_step
            )
            if decision.flagged and not self.acts(ctx.arm):
                reason = Reason.OBSERVE if self.config.mode is Mode.OBSERVE else Reason.CONTROL_ARM
                decision = Decision(True, Action.NONE, None, reason)
        with self._lock:
            attempt = self._next_attempt(ctx.run_id, ctx.step)
            if verdict is None:
                self._critic_errors += 1
                if self._critic_errors == 1:
                    logger.warning("critic %r failed, failing open (logged once): %s", self.critic.name, error)
            else:
                self._verdicts += 1
                self._flags += decision.flagged
                if decision.action is not Action.NONE:
                    self._interventions[decision.action] += 1
        if self.store is not None:
            record = StepRecord(
                run_id=ctx.run_id,
                step=ctx.step,
                attempt=attempt,
                p_fail=None if verdict is None else verdict.p_fail,
                label=None if verdict is None else verdict.label,
                rationale=None if verdict is None else verdict.rationale,
                flagged=decision.flagged,
                action=decision.action,
                reason=decision.reason,
                critic_error=error,
                latency_s=latency,
                created_at=time.time(),
            )
            self._soft_write(self.store.add_step, record)
        return StepReview(ctx.run_id, ctx.step, verdict, decision, error, latency)

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

    def _soft_write(self, write: Callable[[Any], object], record: object) -> None:
        try:
            write(record)
        except Exception as exc:
            self._store_failed(exc)

    def _store_failed(self, exc: Exception) -> None:
        with self._lock:
            self._store_errors += 1
            first = self._store_errors == 1
        if first:
            logger.warning("critic-guard store write failed; the agent continues (logged once)", exc_info=exc)
        else:
            logger.debug("critic-guard store write failed: %s", exc)

    @property
    def counters(self) -> GuardCounters:
        with self._lock:
            return GuardCounters(
                verdicts=self._verdicts,
                flags=self._flags,
                interventions=MappingProxyType(dict(self._interventions)),
                critic_errors=self._critic_errors,
                store_errors=self._store_errors,
            )

    def close(self) -> None:
        """Stop the worker pool and close the store if this guard opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown()
        if self._owns_store and self.store is not None:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CriticGuard({self.guard_key!r}, mode={self.config.mode.value!r})"
