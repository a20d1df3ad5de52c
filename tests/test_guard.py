"""CriticGuard: modes, failing open, timeouts, the worker pool bound, recording, and the per-step overhead."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from critic_guard.config import GuardConfig
from critic_guard.critics import ConstantCritic, FunctionCritic
from critic_guard.guard import CriticGuard, StepReview
from critic_guard.policy import Decision, Policy
from critic_guard.store import OutcomeConflictError, SQLiteStore, StepRecord, Store, UnknownRunError
from critic_guard.types import Action, Arm, Mode, StepContext, Verdict
from tests.support import StubbornCritic

MESSAGES = ({"role": "user", "content": "buy milk"}, {"role": "assistant", "content": "searching"})


def ctx(step: int, run_id: str = "run-1", arm: Arm = Arm.CONTROL) -> StepContext:
    return StepContext(run_id, step, MESSAGES, {"task_id": "t1"}, arm)


@pytest.fixture
def store() -> Iterator[SQLiteStore]:
    with SQLiteStore(":memory:") as opened:
        yield opened


class Counting:
    """A critic that counts its calls and returns a fixed verdict."""

    def __init__(self, p_fail: float = 0.9) -> None:
        self.name = "counting@1"
        self.calls = 0
        self.verdict = Verdict(p_fail, rationale="looks stuck")

    def judge(self, ctx: StepContext) -> Verdict:
        self.calls += 1
        return self.verdict

    async def ajudge(self, ctx: StepContext) -> Verdict:
        self.calls += 1
        return self.verdict


# -- modes -----------------------------------------------------------------------------------------------------


def test_mode_off_does_not_call_the_critic_nor_record_steps(store: Store) -> None:
    critic = Counting()
    guard = CriticGuard(critic, mode="off", store=store)
    run_id = guard.start_run(run_id="run-1")
    review = guard.review(ctx(5))
    assert critic.calls == 0
    assert review == StepReview("run-1", 5, None, Decision(False, Action.NONE, None, "mode_off"), None, 0.0)
    assert store.steps_of(run_id) == []
    assert store.get_run(run_id).run_id == "run-1"  # the run itself is recorded (baseline outcomes)
    assert guard.counters.verdicts == 0


def test_observe_records_and_flags_but_never_acts(store: Store) -> None:
    critic = Counting()
    guard = CriticGuard(critic, store=store, capture_content=True)  # default mode: observe; rationale kept
    guard.start_run(run_id="run-1")
    review = guard.review(ctx(4))
    assert critic.calls == 1
    assert review.verdict == Verdict(0.9, "looks stuck")
    assert review.decision == Decision(True, Action.NONE, None, "observe")
    assert review.action is Action.NONE
    (step,) = store.steps_of("run-1")
    assert (step.p_fail, step.rationale, step.flagged, step.action, step.reason) == (
        0.9,
        "looks stuck",
        True,
        Action.NONE,
        "observe",
    )
    counters = guard.counters
    assert (counters.verdicts, counters.flags, counters.total_interventions) == (1, 1, 0)


def test_on_intervenes_with_feedback(store: Store) -> None:
    guard = CriticGuard(Counting(), mode="on", store=store)
    guard.start_run(run_id="run-1")
    early = guard.review(ctx(1))
    flagged = guard.review(ctx(2))
    assert early.decision.reason == "before_min_step" and early.action is Action.NONE
    assert flagged.action is Action.ROLLBACK
    assert flagged.decision.flagged
    assert flagged.decision.feedback is not None and "0.90" in flagged.decision.feedback
    assert guard.counters.interventions == {Action.ROLLBACK: 1, Action.APPEND: 0}
    assert [s.action for s in store.steps_of("run-1")] == [Action.NONE, Action.ROLLBACK]


def test_interventions_so_far_come_from_the_caller(store: Store) -> None:
    guard = CriticGuard(Counting(), mode="on", store=store, policy=Policy(cooldown=1))
    assert guard.review(ctx(5), interventions=3).decision.reason == "budget_exhausted"
    assert guard.review(ctx(5), interventions=1, last_intervention_step=4).decision.reason == "cooldown"
    assert guard.review(ctx(6), interventions=1, last_intervention_step=4).action is Action.ROLLBACK


@pytest.mark.parametrize(
    ("mode", "control", "treatment"),
    [
        (Mode.OFF, False, False),
        (Mode.OBSERVE, False, False),
        (Mode.ON, True, True),
        (Mode.PILOT, False, True),
        (Mode.AUTO, False, True),
    ],
)
def test_acts(mode: Mode, control: bool, treatment: bool) -> None:
    guard = CriticGuard(Counting(), mode=mode, store=None)
    assert (guard.acts(Arm.CONTROL), guard.acts(Arm.TREATMENT)) == (control, treatment)
    assert guard.acts("treatment") is treatment  # type: ignore[arg-type]


def test_pilot_acts_on_treatment_only() -> None:
    guard = CriticGuard(Counting(), mode="pilot", store=None)
    assert guard.review(ctx(3, arm=Arm.TREATMENT)).action is Action.ROLLBACK
    control = guard.review(ctx(3, arm=Arm.CONTROL))
    assert control.decision == Decision(True, Action.NONE, None, "control_arm")


def test_append_policy_counts_appends() -> None:
    guard = CriticGuard(Counting(), mode="on", store=None, policy=Policy(action="append"))  # type: ignore[arg-type]
    assert guard.review(ctx(3)).action is Action.APPEND
    assert guard.counters.interventions[Action.APPEND] == 1


# -- construction ----------------------------------------------------------------------------------------------


def test_guard_key_and_overrides() -> None:
    base = GuardConfig(agent_name="shop", store=None, critic_timeout_s=2.0)
    guard = CriticGuard(ConstantCritic(0.1, name="judge@3"), base, mode="on", policy=Policy(tau=0.5))
    assert guard.config.agent_name == "shop"
    assert guard.config.critic_timeout_s == 2.0
    assert guard.config.mode is Mode.ON
    assert guard.policy == Policy(tau=0.5)
    assert guard.guard_key == f"shop/judge@3/{Policy(tau=0.5).fingerprint()}" == "shop/judge@3/2109d97b"
    assert base.mode is Mode.OBSERVE  # the base config is not modified


def test_unknown_override_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="did you mean 'mode'"):
        CriticGuard(Counting(), mdoe="on")


def test_store_argument_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert CriticGuard(Counting(), store=None).store is None
    with CriticGuard(Counting(), store="sqlite:///x.db") as guard:
        assert isinstance(guard.store, SQLiteStore) and guard.config.store == "sqlite:///x.db"
    assert (tmp_path / "x.db").is_file()
    with CriticGuard(Counting()) as guard:  # default URL: ./critic_guard.db
        assert isinstance(guard.store, SQLiteStore) and guard.store.path == "critic_guard.db"
    assert (tmp_path / "critic_guard.db").is_file()


def test_close_leaves_a_passed_store_open(store: SQLiteStore) -> None:
    with CriticGuard(Counting(), store=store) as guard:
        guard.start_run(run_id="r")
    assert store.get_run("r").run_id == "r"  # still usable


# -- failing open ----------------------------------------------------------------------------------------------


class ReturnsFloat(Counting):
    def judge(self, ctx: StepContext) -> Verdict:
        return 0.5  # type: ignore[return-value]

    async def ajudge(self, ctx: StepContext) -> Verdict:
        return 0.5  # type: ignore[return-value]


def _boom(ctx: StepContext) -> float:
    raise ValueError("bad json from the judge\n(line 2)")


@pytest.mark.parametrize(
    ("critic", "error"),
    [
        (FunctionCritic(_boom), "ValueError: bad json from the judge (line 2)"),
        (lambda ctx: "garbage", "MalformedVerdictError: critic returned str; expected a Verdict"),
        (lambda ctx: math.nan, "MalformedVerdictError: Verdict.p_fail must be in [0, 1], got nan"),
        (lambda ctx: 1.5, "MalformedVerdictError: Verdict.p_fail must be in [0, 1], got 1.5"),
        (lambda ctx: Verdict(0.9, rationale={"why": "x"}), "TypeError: Verdict.rationale must be a str or None"),
        (lambda ctx: None, "MalformedVerdictError: critic returned NoneType"),
        (ReturnsFloat(), "MalformedVerdictError: critic 'counting@1' returned float, expected a Verdict"),
    ],
)
@pytest.mark.parametrize("use_async", [False, True])
def test_critic_failures_fail_open(critic: Any, error: str, use_async: bool, store: Store) -> None:
    guard = CriticGuard(critic, mode="on", store=store, capture_content=True)  # off: tests/test_at_rest.py
    guard.start_run(run_id="run-1")
    review = asyncio.run(guard.areview(ctx(5))) if use_async else guard.review(ctx(5))
    assert review.verdict is None
    assert review.decision == Decision(False, Action.NONE, None, "critic_error")
    assert review.critic_error is not None and review.critic_error.startswith(error)
    assert guard.counters.critic_errors == 1
    assert guard.counters.verdicts == 0
    (step,) = store.steps_of("run-1")
    assert (step.p_fail, step.action, step.reason, step.critic_error) == (
        None,
        Action.NONE,
        "critic_error",
        review.critic_error,
    )


def test_long_error_messages_are_truncated() -> None:
    def verbose(ctx: StepContext) -> float:
        raise RuntimeError("x" * 1000)

    review = CriticGuard(verbose, mode="on", store=None).review(ctx(3))
    assert review.critic_error is not None
    assert len(review.critic_error) == 300 and review.critic_error.endswith("...")


def test_store_failures_are_counted_not_raised() -> None:
    class BrokenStore(SQLiteStore):
        def add_step(self, step: StepRecord) -> None:
            raise OSError("disk full")

    broken = BrokenStore(":memory:")
    guard = CriticGuard(Counting(), mode="on", store=broken)
    assert guard.review(ctx(3)).action is Action.ROLLBACK
    assert guard.review(ctx(4)).action is Action.ROLLBACK
    assert guard.counters.store_errors == 2
    broken.close()


# -- timeouts and the worker pool ------------------------------------------------------------------------------


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown so hung test critics return and their threads end."""
    event = threading.Event()
    yield event
    event.set()


def test_hanging_sync_critic_times_out(release: threading.Event) -> None:
    def hangs(ctx: StepContext) -> float:
        release.wait(10)
        return 0.1

    guard = CriticGuard(hangs, mode="on", store=None, critic_timeout_s=0.2)
    review = guard.review(ctx(3))
    assert review.critic_error == "timeout after 0.2s"
    assert 0.2 <= review.latency_s < 0.6
    assert review.action is Action.NONE


async def test_hanging_async_critic_times_out_in_areview() -> None:
    async def hangs(ctx: StepContext) -> float:
        await asyncio.sleep(10)
        return 0.1

    guard = CriticGuard(hangs, mode="on", store=None, critic_timeout_s=0.2)
    review = await guard.areview(ctx(3))
    assert review.critic_error == "timeout after 0.2s"
    assert 0.2 <= review.latency_s < 0.6


async def test_hanging_sync_critic_times_out_in_areview_without_blocking_the_loop(release: threading.Event) -> None:
    def hangs(ctx: StepContext) -> float:
        release.wait(10)
        return 0.1

    guard = CriticGuard(hangs, mode="on", store=None, critic_timeout_s=0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    review = await guard.areview(ctx(3))
    task.cancel()
    assert review.critic_error == "timeout after 0.3s"
    assert ticks >= 10  # the loop kept running while the critic hung


def test_critics_own_timeout_error_is_not_reported_as_ours() -> None:
    def flaky(ctx: StepContext) -> float:
        raise TimeoutError("upstream LLM timed out")

    review = CriticGuard(flaky, mode="on", store=None, critic_timeout_s=1.0).review(ctx(3))
    assert review.critic_error == "TimeoutError: upstream LLM timed out"


def test_pool_exhaustion_fails_open_immediately_and_recovers(release: threading.Event) -> None:
    hang = threading.Event()
    hang.set()
    calls: list[int] = []

    def sometimes_hangs(ctx: StepContext) -> float:
        calls.append(ctx.step)
        if hang.is_set():
            release.wait(10)
        return 0.9

    guard = CriticGuard(sometimes_hangs, mode="on", store=None, critic_timeout_s=0.1, critic_workers=2)
    assert [guard.review(ctx(3)).critic_error for _ in range(2)] == ["timeout after 0.1s"] * 2
    exhausted = guard.review(ctx(3))
    assert len(calls) == 2  # immediately: the third call was never submitted, so it waited for no deadline
    assert exhausted.critic_error == "critic pool exhausted: all 2 workers are stuck in timed-out critic calls"
    assert guard.counters.critic_errors == 3
    hang.clear()
    release.set()  # the hung calls return and free their workers
    deadline = time.monotonic() + 5
    while guard._parts.steps.pool.hung and time.monotonic() < deadline:
        time.sleep(0.01)
    assert guard.review(ctx(3)).action is Action.ROLLBACK


def test_sync_critics_run_in_the_pool_unless_the_timeout_is_disabled() -> None:
    threads: list[str] = []

    def where(ctx: StepContext) -> float:
        threads.append(threading.current_thread().name)
        return 0.1

    CriticGuard(where, store=None, agent_name="shop").review(ctx(3))
    CriticGuard(where, store=None, critic_timeout_s=None).review(ctx(3))
    assert threads == ["critic-guard-shop-0", threading.current_thread().name]


def test_a_hung_critic_does_not_keep_the_process_alive() -> None:
    script = (
        "import time\n"
        "from critic_guard.guard import CriticGuard\n"
        "from critic_guard.types import StepContext\n"
        "guard = CriticGuard(lambda ctx: time.sleep(60), mode='on', store=None, critic_timeout_s=0.1)\n"
        "print(guard.review(StepContext('r', 3, ())).critic_error)\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "timeout after 0.1s"
    assert time.perf_counter() - started < 10


# -- async deadlines hold: critics that ignore cancellation or block their loop ----------------------------------


def _until(condition: Any, limit_s: float = 10.0) -> bool:
    """Wait for ``condition()`` from another thread (bounded, so a broken test fails instead of hanging)."""
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return bool(condition())


@pytest.mark.parametrize("how", ["swallow", "block"])
async def test_an_async_critic_ignoring_its_deadline_cannot_hold_the_step(
    how: str, release: threading.Event, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    critic = StubbornCritic(how, release)
    guard = CriticGuard(critic, mode="on", store=store, critic_timeout_s=0.05, policy=Policy(min_step=0))
    guard.start_run(run_id="run-1")
    ticks = 0

    async def ticker() -> None:  # the caller's loop stays free
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    reviews = [await guard.areview(ctx(step)) for step in range(3)]
    task.cancel()
    assert critic.finished == 0  # every step went on while the critic was still busy
    assert ticks > 0
    assert [(r.verdict, r.action, r.critic_error) for r in reviews] == [(None, Action.NONE, "timeout after 0.05s")] * 3
    if how == "block":
        await asyncio.sleep(0.3)  # keep the critic's loop blocked past the lag threshold (BLOCKED_AFTER_S = 0.25)
    release.set()
    started = critic.started
    # swallow: each call ran (one the loop thread could not start within its 50 ms would never start, so "up to");
    # block: the calls queued behind the blocked loop never started
    assert 1 <= started <= 3 if how == "swallow" else started == 1
    assert await asyncio.to_thread(_until, lambda: guard.counters.late_verdicts == started)
    counters = guard.counters
    assert (counters.verdicts, counters.critic_errors, counters.total_interventions) == (0, 3, 0)  # never acted on
    assert [s.critic_error for s in store.steps_of("run-1")] == ["timeout after 0.05s"] * 3
    blocked = [r for r in caplog.records if "blocked its event loop" in r.getMessage()]
    assert len(blocked) == (1 if how == "block" else 0)


class CallerLoop(StubbornCritic):
    """A ``caller_loop`` critic (its async clients are bound to the caller's loop) that swallows its cancellation."""

    caller_loop = True

    def __init__(self, release: threading.Event) -> None:
        super().__init__("swallow", release)
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def ajudge(self, ctx: StepContext) -> Verdict:
        self.loops.append(asyncio.get_running_loop())
        return await super().ajudge(ctx)


async def test_a_caller_loop_critic_runs_on_the_callers_loop_and_still_cannot_hold_the_step(
    release: threading.Event, store: Store
) -> None:
    critic = CallerLoop(release)
    guard = CriticGuard(critic, mode="on", store=store, critic_timeout_s=0.05, policy=Policy(min_step=0))
    guard.start_run(run_id="run-1")
    reviews = [await guard.areview(ctx(step)) for step in range(2)]
    assert critic.loops == [asyncio.get_running_loop()] * 2  # no hop: the critic's clients stay on their loop
    assert critic.finished == 0
    assert [(r.verdict, r.action, r.critic_error) for r in reviews] == [(None, Action.NONE, "timeout after 0.05s")] * 2
    release.set()
    deadline = time.monotonic() + 10  # the left tasks finish on this loop
    while guard.counters.late_verdicts < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    counters = guard.counters
    assert (counters.late_verdicts, counters.critic_errors, counters.total_interventions) == (2, 2, 0)
    answering = CriticGuard(ConstantCritic(0.9), mode="on", store=None, policy=Policy(min_step=0))
    answering.critic.caller_loop = True  # type: ignore[attr-defined]
    assert (await answering.areview(ctx(0))).action is Action.ROLLBACK


async def test_a_critic_raising_cancelled_error_is_a_critic_error_not_a_cancellation() -> None:
    async def cancels_itself(ctx: StepContext) -> float:
        raise asyncio.CancelledError

    def sync_cancels_itself(ctx: StepContext) -> float:
        raise asyncio.CancelledError

    guard = CriticGuard(cancels_itself, mode="on", store=None, critic_timeout_s=1.0)
    assert (await guard.areview(ctx(3))).critic_error == "CriticCancelled: the critic's task was cancelled"
    guard = CriticGuard(sync_cancels_itself, mode="on", store=None, critic_timeout_s=1.0)
    assert (await guard.areview(ctx(3))).critic_error == "CriticCancelled: the critic raised CancelledError"
    assert guard.review(ctx(3)).critic_error == "CriticCancelled: the critic raised CancelledError"
    assert guard.counters.critic_errors == 2


async def test_an_async_critic_runs_in_the_callers_context_on_the_guards_loop() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[str, str]] = []

    async def critic(ctx: StepContext) -> float:
        seen.append((var.get(), threading.current_thread().name))
        return 0.2

    guard = CriticGuard(critic, mode="on", store=None, agent_name="shop")
    var.set("caller's")
    review = await guard.areview(ctx(3))
    assert review.verdict == Verdict(0.2)
    assert seen == [("caller's", "critic-guard-shop-loop")]
    guard.close()
    assert (await guard.areview(ctx(4))).critic_error == "RuntimeError: the critic loop is shut down"


def test_the_guards_event_loop_thread_ends_with_close_or_when_the_guard_is_dropped() -> None:
    async def critic(ctx: StepContext) -> float:
        return 0.1

    def loop_threads(agent: str) -> int:
        return sum(t.name == f"critic-guard-{agent}-loop" for t in threading.enumerate())

    closed = CriticGuard(critic, mode="on", store=None, agent_name="closed")
    dropped = CriticGuard(critic, mode="on", store=None, agent_name="dropped")
    for guard in (closed, dropped):
        assert asyncio.run(guard.areview(ctx(3))).verdict == Verdict(0.1)
    assert (loop_threads("closed"), loop_threads("dropped")) == (1, 1)
    closed.close()
    del dropped, guard  # the loop variable held it too
    gc.collect()
    assert _until(lambda: loop_threads("closed") + loop_threads("dropped") == 0)


def test_a_sync_critic_answering_after_its_deadline_is_counted_late_and_not_acted_on(
    release: threading.Event,
) -> None:
    def slow(ctx: StepContext) -> float:
        release.wait(30)
        return 0.9

    guard = CriticGuard(slow, mode="on", store=None, critic_timeout_s=0.05)
    assert guard.review(ctx(3)).critic_error == "timeout after 0.05s"
    release.set()
    assert _until(lambda: guard.counters.late_verdicts == 1)
    assert guard.counters.total_interventions == 0


# -- verdicts are checked where they enter the guard -----------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
def test_a_poison_verdict_is_a_critic_error_and_other_runs_keep_every_row(use_async: bool, store: Store) -> None:
    """A critic returning a dict as rationale, on a step it flags: a critic error for that step only (no
    AttributeError while building the feedback), and every other run's rows are written."""

    def critic(ctx: StepContext) -> Any:
        if ctx.run_id == "poison" and ctx.step == 2:
            return {"p_fail": 0.95, "rationale": {"tool": "rm", "args": ["-rf"]}}
        return Verdict(0.95 if ctx.step == 2 else 0.1, rationale="ok")

    guard = CriticGuard(critic, mode="on", store=store, policy=Policy(min_step=0))
    runs = ("a", "poison", "b", "c")
    for run_id in runs:
        guard.start_run(run_id=run_id)
    for step in range(4):
        for run_id in runs:
            context = ctx(step, run_id)
            review = asyncio.run(guard.areview(context)) if use_async else guard.review(context)
            poisoned = run_id == "poison" and step == 2
            assert review.action is (Action.ROLLBACK if step == 2 and not poisoned else Action.NONE)
    assert [len(store.steps_of(run_id)) for run_id in runs] == [4, 4, 4, 4]
    [bad] = [s for s in store.steps_of("poison") if s.critic_error]
    assert (bad.step, bad.p_fail, bad.rationale, bad.reason) == (2, None, None, "critic_error")
    assert bad.critic_error == "MalformedVerdictError: Verdict.rationale must be a str or None, got dict"
    counters = guard.counters
    assert (counters.critic_errors, counters.verdicts, counters.lost_steps, counters.store_errors) == (1, 15, 0, 0)


class LooseVerdict(Verdict):
    """A subclass that skips the checks: the guard rebuilds it, so its bad rationale is still refused."""

    def __post_init__(self) -> None:
        pass


@pytest.mark.parametrize("use_async", [False, True])
def test_a_verdict_subclass_skipping_the_checks_is_checked_at_the_boundary(use_async: bool) -> None:
    class Loose(Counting):
        def __init__(self, rationale: Any) -> None:
            super().__init__()
            self.verdict = LooseVerdict(0.9, rationale=rationale)

    for rationale, error in (({"a": 1}, "Verdict.rationale must be a str or None, got dict"), ("fine", None)):
        guard = CriticGuard(Loose(rationale), mode="on", store=None)
        review = asyncio.run(guard.areview(ctx(3))) if use_async else guard.review(ctx(3))
        if error is None:
            assert type(review.verdict) is Verdict and review.action is Action.ROLLBACK
        else:
            assert review.critic_error == f"MalformedVerdictError: critic 'counting@1': {error}"


def test_verdicts_accept_finite_numpy_numbers_and_refuse_the_rest() -> None:
    assert Verdict(np.float32(0.25), rationale=np.str_("why")) == Verdict(0.25, rationale="why")
    assert type(Verdict(np.float32(0.25)).p_fail) is float
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Verdict(np.float64("nan"))
    with pytest.raises(TypeError, match="label must be a str or None, got int"):
        Verdict(0.5, label=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a number, got bool"):
        Verdict(np.bool_(True))  # type: ignore[arg-type]


# -- runs and outcomes -----------------------------------------------------------------------------------------


def test_runs_are_recorded(store: Store) -> None:
    guard = CriticGuard(Counting(), store=store, agent_name="shop")
    run_id = guard.start_run(task={"id": 42, "goal": "buy milk"}, arm=Arm.TREATMENT, parent_run_id="p", fork_step=3)
    assert len(run_id) == 32 and int(run_id, 16) >= 0  # uuid4 hex
    run = store.get_run(run_id)
    assert (run.guard_key, run.agent_name, run.arm, run.task_id, run.task, run.parent_run_id, run.fork_step) == (
        guard.guard_key,
        "shop",
        Arm.TREATMENT,
        "42",
        {"id": 42},  # the goal is content: kept with capture on or when allowlisted (tests/test_at_rest.py)
        "p",
        3,
    )
    assert run.status == "running" and run.ended_at is None
    assert guard.start_run(run_id=run_id) == run_id  # resuming is harmless
    guard.end_run(run_id, status="failed", success=False)
    ended = store.get_run(run_id)
    assert ended.status == "failed" and ended.ended_at is not None
    outcome = store.get_outcome(run_id)
    assert outcome is not None and outcome.success is False


def test_record_outcome(store: Store) -> None:
    guard = CriticGuard(Counting(), store=store)
    run_id = guard.start_run()
    guard.record_outcome(run_id, True)
    guard.record_outcome(run_id, True)  # idempotent
    with pytest.raises(OutcomeConflictError):
        guard.record_outcome(run_id, False)
    with pytest.raises(KeyError, match="unknown run id 'nope'"):
        guard.record_outcome("nope", True)
    with pytest.raises(UnknownRunError):
        guard.end_run("nope")
    with pytest.raises(TypeError, match="success must be a bool"):
        guard.record_outcome(run_id, 1)  # type: ignore[arg-type]


def test_record_outcome_without_a_store() -> None:
    guard = CriticGuard(Counting(), store=None)
    run_id = guard.start_run()
    guard.end_run(run_id, success=True)
    guard.record_outcome(run_id, True)
    with pytest.raises(OutcomeConflictError):
        guard.record_outcome(run_id, False)
    with pytest.raises(UnknownRunError):
        guard.record_outcome("nope", True)


def test_attempts_number_retries_of_a_step(store: Store) -> None:
    guard = CriticGuard(Counting(), mode="on", store=store)
    for step in (2, 2, 2, 3, 4, 4):
        guard.review(ctx(step))
    guard.review(ctx(2, run_id="run-2"))
    assert [(s.step, s.attempt) for s in store.steps_of("run-1")] == [(2, 0), (2, 1), (2, 2), (3, 0), (4, 0), (4, 1)]
    assert [(s.step, s.attempt) for s in store.steps_of("run-2")] == [(2, 0)]


def test_concurrent_reviews_from_threads(tmp_path: Path) -> None:
    with CriticGuard(ConstantCritic(0.7), mode="on", store=f"sqlite:///{tmp_path}/g.db") as guard:

        def run(k: int) -> None:
            run_id = guard.start_run(run_id=f"run-{k}")
            for step in range(40):
                guard.review(ctx(step, run_id=run_id), interventions=0)
            guard.end_run(run_id, success=k % 2 == 0)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counters = guard.counters
        assert (counters.verdicts, counters.flags, counters.critic_errors, counters.store_errors) == (240, 228, 0, 0)
        assert guard.store is not None
        assert all(len(guard.store.steps_of(f"run-{k}")) == 40 for k in range(6))
        assert len(guard.store.runs(guard.guard_key)) == 6
