"""The store test suite every backend must pass.

A backend's test module provides a ``store`` fixture (a fresh, empty store) and a ``store_factory`` fixture (a
callable that opens another store on one fresh database each time it is called, as a second replica or a restarted
process would; the test closes what it opens), and star-imports these tests, as LangGraph does for its checkpoint
savers. Nothing here may depend on a particular backend.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from critic_guard.config import GuardConfig
from critic_guard.critics import ConstantCritic
from critic_guard.guard import CriticGuard
from critic_guard.lifecycle import GuardRecord, GuardState, LifecycleError, Transition, apply_pair, override
from critic_guard.stats import MonitorState, PairedCounts
from critic_guard.store import (
    OutcomeRecord,
    PairDesign,
    PairKind,
    PairRecord,
    PairStatus,
    PairUpdate,
    PilotTaskStatus,
    RunRecord,
    StepRecord,
    Store,
)
from critic_guard.store.base import (  # the errors the interface's methods document
    OutcomeConflictError,
    PairConflictError,
    PairStateError,
    UnknownPairError,
    UnknownRunError,
)
from critic_guard.types import Action, Arm, Mode

__all__ = [
    "KEY",
    "StoreFactory",
    "make_pair",
    "make_run",
    "make_step",
    "test_a_refused_override_changes_nothing",
    "test_a_step_row_the_database_refuses_loses_only_itself",
    "test_aa_pair_counts_noise_without_touching_the_monitor",
    "test_add_run_is_idempotent",
    "test_complete_pair_waits_for_both_outcomes",
    "test_concurrent_completions_count_each_pair_once",
    "test_concurrent_writes_from_threads",
    "test_end_run",
    "test_guard_keys_and_empty_guard",
    "test_human_override_is_atomic_with_its_transition",
    "test_initial_record_must_be_for_the_pairs_guard",
    "test_lifecycle_survives_a_restart",
    "test_mark_incomplete",
    "test_open_pair_conflict",
    "test_open_pair_round_trip_and_idempotent",
    "test_outcomes",
    "test_pairs_of_run_and_by_status",
    "test_pilot_task_attempts_and_finishing",
    "test_pilot_task_rows_survive_a_restart",
    "test_production_steps_read_a_keys_steps_with_their_outcomes_in_one_go",
    "test_replicas_complete_interleaved_pairs_exactly_once",
    "test_run_round_trip",
    "test_run_summaries_count_production_runs_steps_and_outcomes",
    "test_runs_by_guard_key",
    "test_runs_of_task",
    "test_single_run_pair_counts_one_outcome_for_both_arms",
    "test_steps_round_trip_in_order",
    "test_transition_is_stored_with_the_pair_that_caused_it",
    "test_unknown_pairs",
    "test_unknown_runs",
]

KEY = "agent/critic/abcd1234"
StoreFactory = Callable[[], Store]
AUTO = GuardConfig(mode="auto", store=None)


def _in_threads(work: Callable[[int], None], n: int) -> None:
    """Run ``work(0)``, ..., ``work(n - 1)`` in ``n`` threads at once and wait for all of them."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def make_run(run_id: str, guard_key: str = KEY, started_at: float = 1000.0, **kw: Any) -> RunRecord:
    """A run with test defaults; ``kw`` overrides any other field."""
    run = RunRecord(run_id=run_id, guard_key=guard_key, agent_name="agent", arm=Arm.CONTROL, started_at=started_at)
    return replace(run, **kw)


def make_step(run_id: str, step: int, attempt: int = 0, p_fail: float | None = 0.5, **kw: Any) -> StepRecord:
    """A step with test defaults; ``kw`` overrides any other field."""
    record = StepRecord(
        run_id=run_id,
        step=step,
        attempt=attempt,
        p_fail=p_fail,
        label=None,
        rationale=None,
        flagged=False,
        action=Action.NONE,
        reason="below_tau",
        critic_error=None,
        latency_s=0.001,
        created_at=2000.0 + step,
    )
    return replace(record, **kw)


def test_run_round_trip(store: Store) -> None:
    run = RunRecord(
        run_id="r1",
        guard_key="shop/llm-judge@2/3f2a9c1b",
        agent_name="shop",
        arm=Arm.TREATMENT,
        started_at=1234.5,
        task_id="t-7",
        task={"task_id": "t-7", "difficulty": 3, "tags": ["a", "b"], "nested": {"x": None}},
        parent_run_id="r0",
        fork_step=4,
    )
    assert store.add_run(run) is True
    assert store.get_run("r1") == run
    assert store.get_outcome("r1") is None
    assert store.steps_of("r1") == []


def test_add_run_is_idempotent(store: Store) -> None:
    assert store.add_run(make_run("r1", started_at=1.0)) is True
    assert store.add_run(make_run("r1", guard_key="other/x/00000000", started_at=2.0)) is False
    assert store.get_run("r1") == make_run("r1", started_at=1.0)


def test_end_run(store: Store) -> None:
    store.add_run(make_run("r1"))
    store.end_run("r1", status="failed", ended_at=1010.25)
    got = store.get_run("r1")
    assert (got.status, got.ended_at) == ("failed", 1010.25)


def test_unknown_runs(store: Store) -> None:
    with pytest.raises(UnknownRunError, match="unknown run id 'nope'"):
        store.get_run("nope")
    with pytest.raises(KeyError):  # UnknownRunError is a KeyError
        store.end_run("nope", status="completed", ended_at=1.0)
    with pytest.raises(UnknownRunError):
        store.record_outcome("nope", True, recorded_at=1.0)
    with pytest.raises(UnknownRunError):
        store.get_outcome("nope")
    assert store.steps_of("nope") == []


def test_steps_round_trip_in_order(store: Store) -> None:
    store.add_run(make_run("r1"))
    flagged = make_step(
        "r1",
        3,
        attempt=0,
        p_fail=0.91,
        label="fail",
        rationale="loops on the same search",
        flagged=True,
        action=Action.ROLLBACK,
        reason="flag",
    )
    retry = make_step("r1", 3, attempt=1, p_fail=0.2)
    error = make_step("r1", 4, p_fail=None, reason="critic_error", critic_error="timeout after 5.0s", latency_s=5.0)
    first = make_step("r1", 0, p_fail=0.1)
    for record in (error, retry, flagged, first):  # inserted out of order
        store.add_step(record)
    store.add_step(make_step("other", 0))
    assert store.steps_of("r1") == [first, flagged, retry, error]
    got = store.steps_of("r1")[1]
    assert isinstance(got.action, Action) and got.action is Action.ROLLBACK
    assert got.reason == "flag"


def test_a_step_row_the_database_refuses_loses_only_itself(store: Store) -> None:
    """A value neither database can store (a dict where text belongs) fails its batch; the batch's other rows,
    from other runs, are still written, and the lost row is counted."""
    runs = ("r1", "r2", "r3")
    for run_id in (*runs, "bad"):
        store.add_run(make_run(run_id))
    store.flush()
    for step in range(3):
        for run_id in runs:
            store.add_step(make_step(run_id, step))
        if step == 1:
            store.add_step(make_step("bad", 0, rationale={"why": "a dict"}))
    store.add_step(make_step("bad", 1))
    assert [[s.step for s in store.steps_of(run_id)] for run_id in runs] == [[0, 1, 2]] * 3
    assert [s.step for s in store.steps_of("bad")] == [1]
    assert store.lost_steps == 1


def test_outcomes(store: Store) -> None:
    store.add_run(make_run("r1"))
    first = store.record_outcome("r1", False, recorded_at=50.0)
    assert first == OutcomeRecord("r1", False, 50.0)
    assert store.record_outcome("r1", False, recorded_at=99.0) == first  # idempotent: the first record stays
    assert store.get_outcome("r1") == first
    with pytest.raises(OutcomeConflictError, match="already has outcome success=False"):
        store.record_outcome("r1", True, recorded_at=100.0)
    assert store.get_outcome("r1") == first


def test_runs_by_guard_key(store: Store) -> None:
    store.add_run(make_run("late", guard_key="a/c/1", started_at=30.0))
    store.add_run(make_run("early", guard_key="a/c/1", started_at=10.0))
    store.add_run(make_run("middle", guard_key="b/c/2", started_at=20.0))
    assert [r.run_id for r in store.runs()] == ["early", "middle", "late"]
    assert [r.run_id for r in store.runs("a/c/1")] == ["early", "late"]
    assert [r.run_id for r in store.runs("a/c/1", limit=1)] == ["early"]
    assert store.runs("missing/key/0") == []
    with pytest.raises(ValueError, match="limit must be >= 0"):
        store.runs(limit=-1)


def test_production_steps_read_a_keys_steps_with_their_outcomes_in_one_go(store: Store) -> None:
    store.add_run(make_run("late", started_at=30.0))
    store.add_run(make_run("early", started_at=10.0))
    store.add_run(make_run("tie-b", started_at=20.0))  # the same start: in the order inserted
    store.add_run(make_run("tie-a", started_at=20.0))
    store.add_run(make_run("early-branch", started_at=11.0, parent_run_id="early", fork_step=1))  # a shadow branch
    store.add_run(make_run("other", guard_key="b/c/2", started_at=5.0))
    store.add_run(make_run("no-steps", started_at=1.0))
    for run_id in ("late", "early", "tie-b", "tie-a", "early-branch", "other"):
        store.add_step(make_step(run_id, 1, p_fail=0.3))
        store.add_step(make_step(run_id, 0, p_fail=None, critic_error="TimeoutError", reason="critic_error"))
    store.add_step(make_step("early", 0, attempt=1, p_fail=0.9, flagged=True, reason="observe"))
    store.record_outcome("early", False, recorded_at=40.0)
    store.record_outcome("late", True, recorded_at=40.0)
    store.record_outcome("early-branch", True, recorded_at=40.0)
    got = store.production_steps(KEY)  # the steps are still queued: they are read too
    assert [(s.run_id, s.step, s.attempt, success) for s, success in got] == [
        ("early", 0, 0, False),
        ("early", 0, 1, False),
        ("early", 1, 0, False),
        ("tie-b", 0, 0, None),
        ("tie-b", 1, 0, None),
        ("tie-a", 0, 0, None),
        ("tie-a", 1, 0, None),
        ("late", 0, 0, True),
        ("late", 1, 0, True),
    ]
    per_run = [
        (step, None if outcome is None else outcome.success)
        for run in store.runs(KEY)
        if run.parent_run_id is None
        for outcome in [store.get_outcome(run.run_id)]
        for step in store.steps_of(run.run_id)
    ]
    assert got == per_run  # what one read per run gives, records and all
    assert store.production_steps("missing/key/0") == []


def test_concurrent_writes_from_threads(store: Store) -> None:
    n_threads, per_thread = 8, 60
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            store.add_run(make_run(f"run-{t}", started_at=float(t)))
            for i in range(per_thread):
                store.add_step(make_step(f"run-{t}", i, p_fail=i / per_thread))
            store.record_outcome(f"run-{t}", t % 2 == 0, recorded_at=1.0)
        except BaseException as exc:
            errors.append(exc)

    _in_threads(work, n_threads)
    assert errors == []
    assert len(store.runs()) == n_threads
    for t in range(n_threads):
        steps = store.steps_of(f"run-{t}")
        assert [s.step for s in steps] == list(range(per_thread))
        assert [s.p_fail for s in steps] == [i / per_thread for i in range(per_thread)]
        outcome = store.get_outcome(f"run-{t}")
        assert outcome is not None and outcome.success is (t % 2 == 0)


# -- pairs and the lifecycle -------------------------------------------------------------------------------------


def make_pair(pair_id: str, control: str, treatment: str, *, flagged: bool = True, **kw: Any) -> PairRecord:
    """An open pair of guard ``KEY`` with test defaults; ``kw`` overrides any other field."""
    return PairRecord(pair_id, KEY, control, treatment, flagged=flagged, created_at=100.0, **kw)


def initial(guard_key: str = KEY) -> GuardRecord:
    return GuardRecord.start(guard_key, 0.05, now=1.0)


def auto_rule(now: float = 500.0, config: GuardConfig = AUTO) -> Any:
    return partial(apply_pair, mode=Mode.AUTO, config=config, now=now)


def never(record: GuardRecord, control: bool, treatment: bool) -> tuple[GuardRecord, Transition | None]:
    raise AssertionError("the lifecycle rule must not run here")


def with_outcomes(store: Store, outcomes: dict[str, bool]) -> None:
    for run_id, success in outcomes.items():
        store.add_run(make_run(run_id))
        store.record_outcome(run_id, success, recorded_at=10.0)


def test_open_pair_round_trip_and_idempotent(store: Store) -> None:
    pair = make_pair("p1", "c1", "t1", task_id="task-1", fork_step=3, fork_checkpoint_id="ckpt-9")
    assert store.open_pair(pair) == pair
    assert store.get_pair("p1") == pair
    again = store.open_pair(replace(pair, created_at=999.0, fork_step=4))
    assert again == pair  # the first record stays
    full = make_pair("p2", "c2", "t2", flagged=False, design=PairDesign.FULL)
    assert store.open_pair(full) == full
    got = store.get_pair("p2")
    assert (got.kind, got.design, got.status, got.flagged) == (PairKind.AB, PairDesign.FULL, PairStatus.OPEN, False)
    assert isinstance(got.status, PairStatus)


def test_open_pair_conflict(store: Store) -> None:
    store.open_pair(make_pair("p1", "c1", "t1"))
    with pytest.raises(PairConflictError, match="treatment_run_id='t1' \\(new: 't2'\\)"):
        store.open_pair(make_pair("p1", "c1", "t2"))
    with pytest.raises(PairConflictError, match="kind"):
        store.open_pair(make_pair("p1", "c1", "t1", kind="aa"))
    assert store.get_pair("p1") == make_pair("p1", "c1", "t1")


def test_unknown_pairs(store: Store) -> None:
    with pytest.raises(UnknownPairError, match="unknown pair id 'nope'"):
        store.get_pair("nope")
    with pytest.raises(KeyError):
        store.complete_pair("nope", never, initial(), at=1.0)
    with pytest.raises(UnknownPairError):
        store.mark_incomplete("nope", "tool with side effects", initial=initial(), at=1.0)
    assert store.pairs_of_run("nope") == []


def test_pairs_of_run_and_by_status(store: Store) -> None:
    ab = store.open_pair(make_pair("p1", "c1", "t1"))
    single = store.open_pair(replace(make_pair("p2", "c2", "c2", flagged=False), created_at=101.0))
    aa = store.open_pair(replace(make_pair("p1:aa", "c1", "a1", kind="aa"), created_at=102.0))
    store.open_pair(PairRecord("q1", "other/key/1", "c1", "t9", flagged=True, created_at=99.0))
    assert [p.pair_id for p in store.pairs_of_run("c1")] == ["q1", "p1", "p1:aa"]
    assert store.pairs_of_run("c2") == [single]
    assert store.pairs(KEY) == [ab, single, aa]
    with_outcomes(store, {"c2": True})
    store.complete_pair("p2", auto_rule(), initial(), at=200.0)
    assert [p.pair_id for p in store.pairs(KEY, "open")] == ["p1", "p1:aa"]
    assert [p.pair_id for p in store.pairs(KEY, PairStatus.COMPLETE)] == ["p2"]
    assert store.pairs(KEY, "incomplete") == []
    with pytest.raises(ValueError, match="'done' is not a valid PairStatus"):
        store.pairs(KEY, "done")


def test_complete_pair_waits_for_both_outcomes(store: Store) -> None:
    store.open_pair(make_pair("p1", "c1", "t1"))
    assert store.complete_pair("p1", auto_rule(), initial(), at=200.0) is None
    with_outcomes(store, {"c1": True})
    assert store.complete_pair("p1", auto_rule(), initial(), at=200.0) is None
    assert store.get_pair("p1").status is PairStatus.OPEN
    with_outcomes(store, {"t1": False})
    update = store.complete_pair("p1", auto_rule(), initial(), at=200.0)
    assert isinstance(update, PairUpdate)
    assert update.pair == replace(
        make_pair("p1", "c1", "t1"),
        status=PairStatus.COMPLETE,
        control_success=True,
        treatment_success=False,
        completed_at=200.0,
    )
    assert (update.pair.cell, update.counted, update.transition) == ("n10", True, None)
    guard = update.guard
    assert (guard.state, guard.counts, guard.version, guard.updated_at) == (
        GuardState.PILOT,
        PairedCounts(0, 0, 1, 0),
        1,
        500.0,
    )
    assert guard.monitor == MonitorState.start(0.05).update_pair(True, False)  # exact through the store
    assert store.get_pair("p1") == update.pair
    assert store.get_guard(KEY) == guard
    assert store.complete_pair("p1", auto_rule(), initial(), at=300.0) is None  # complete: skipped
    assert store.get_guard(KEY) == guard


def test_single_run_pair_counts_one_outcome_for_both_arms(store: Store) -> None:
    store.open_pair(make_pair("r1", "r1", "r1", flagged=False))
    with_outcomes(store, {"r1": True})
    update = store.complete_pair("r1", auto_rule(), initial(), at=200.0)
    assert update is not None and update.pair.cell == "n11"
    assert update.guard.counts == PairedCounts(0, 0, 0, 1)
    assert update.guard.monitor.t == 1 and update.guard.monitor.harm_log_wealth == 0.0


def test_aa_pair_counts_noise_without_touching_the_monitor(store: Store) -> None:
    store.open_pair(make_pair("p1:aa", "c1", "a1", kind="aa"))
    store.open_pair(make_pair("p2:aa", "c2", "a2", kind="aa"))
    with_outcomes(store, {"c1": True, "a1": False, "c2": False, "a2": False})
    first = store.complete_pair("p1:aa", never, initial(), at=200.0)
    second = store.complete_pair("p2:aa", never, initial(), at=201.0)
    assert first is not None and second is not None
    assert (first.counted, first.transition, first.pair.cell) == (False, None, "n10")
    guard = store.get_guard(KEY)
    assert guard is not None
    assert (guard.aa_pairs, guard.aa_discordant, guard.pairs_counted, guard.version) == (2, 1, 0, 2)
    assert guard.monitor == MonitorState.start(0.05)


def test_transition_is_stored_with_the_pair_that_caused_it(store: Store) -> None:
    expected, monitor = None, MonitorState.start(0.05)
    for i in range(1, 40):
        monitor = monitor.update_pair(True, False)
        if expected is None and monitor.harm_proven:
            expected = i
    assert expected is not None
    updates = []
    for i in range(1, 31):
        store.open_pair(make_pair(f"p{i}", f"c{i}", f"t{i}"))
        with_outcomes(store, {f"c{i}": True, f"t{i}": False})  # every pair a disruption
        update = store.complete_pair(f"p{i}", auto_rule(now=1000.0 + i), initial(), at=1000.0 + i)
        assert update is not None
        updates.append(update)
    moved = [(i + 1, u.transition) for i, u in enumerate(updates) if u.transition is not None]
    assert [i for i, _ in moved] == [expected]
    transition = moved[0][1]
    assert transition is not None
    assert (transition.from_state, transition.to_state, transition.actor, transition.at) == (
        GuardState.PILOT,
        GuardState.DISABLED,
        "monitor",
        1000.0 + expected,
    )
    assert transition.reason.startswith("harm proven: harm e-value")
    assert transition.evidence["t"] == expected and transition.evidence["counts"] == [0, 0, expected, 0]
    assert transition.evidence["harm_wealth"] >= 20.0
    assert store.transitions(KEY) == [transition]
    guard = store.get_guard(KEY)
    assert guard is not None
    assert (guard.state, guard.state_since_t, guard.monitor.t, guard.last_transition) == (
        GuardState.DISABLED,
        expected,
        30,
        transition,
    )
    assert updates[expected - 1].guard.last_transition == transition
    assert updates[-1].guard == guard


def test_mark_incomplete(store: Store) -> None:
    store.open_pair(make_pair("p1", "c1", "t1"))
    assert store.mark_incomplete("p1", " shadow would run send_email ", initial=initial(), at=150.0) is True
    assert store.mark_incomplete("p1", "again", initial=initial(), at=160.0) is False
    pair = store.get_pair("p1")
    assert (pair.status, pair.reason, pair.completed_at) == (
        PairStatus.INCOMPLETE,
        "shadow would run send_email",
        150.0,
    )
    guard = store.get_guard(KEY)
    assert guard is not None and (guard.incomplete, guard.pairs_counted, guard.version) == (1, 0, 1)
    with_outcomes(store, {"c1": True, "t1": True})
    assert store.complete_pair("p1", never, initial(), at=200.0) is None  # excluded for good
    store.open_pair(make_pair("p2", "c1", "t1"))
    assert store.complete_pair("p2", auto_rule(), initial(), at=200.0) is not None
    with pytest.raises(PairStateError, match="pair 'p2' is complete \\(cell n11\\)"):
        store.mark_incomplete("p2", "too late", initial=initial(), at=210.0)
    with pytest.raises(ValueError, match="needs a reason"):
        store.mark_incomplete("p1", " ", initial=initial(), at=210.0)


def test_initial_record_must_be_for_the_pairs_guard(store: Store) -> None:
    store.open_pair(make_pair("p1", "c1", "c1", flagged=False))
    with_outcomes(store, {"c1": True})
    with pytest.raises(ValueError, match="initial record is for guard 'other/key/1'"):
        store.complete_pair("p1", auto_rule(), initial("other/key/1"), at=200.0)
    assert store.get_pair("p1").status is PairStatus.OPEN
    assert store.get_guard("other/key/1") is None


def test_guard_keys_and_empty_guard(store: Store) -> None:
    assert store.get_guard(KEY) is None
    assert store.transitions(KEY) == []
    assert store.guard_keys() == []
    store.open_pair(PairRecord("q", "b/c/2", "r", "r", flagged=False, created_at=1.0))
    store.set_guard_state(KEY, partial(override, state="disabled", reason="manual", now=5.0), initial())
    assert store.guard_keys() == ["agent/critic/abcd1234", "b/c/2"]


def test_run_summaries_count_production_runs_steps_and_outcomes(store: Store) -> None:
    assert store.run_summaries() == []
    store.add_run(make_run("a1"))
    store.add_run(make_run("a2"))
    store.add_run(make_run("a3"))
    store.add_run(make_run("a1-branch", parent_run_id="a1", fork_step=2))  # a shadow branch: not counted
    store.add_run(make_run("b1", guard_key="b/c/2"))
    store.add_step(make_step("a1", 0, p_fail=0.1))
    store.add_step(make_step("a1", 1, p_fail=0.7, flagged=True, reason="observe"))
    store.add_step(make_step("a1", 2, p_fail=0.9, flagged=True, reason="observe"))
    store.add_step(make_step("a2", 0, p_fail=None, critic_error="TimeoutError", reason="critic_error"))
    store.add_step(make_step("a2", 1, p_fail=0.8, flagged=True, action=Action.ROLLBACK, reason="p_fail >= tau"))
    store.add_step(make_step("a1-branch", 2, p_fail=0.9, flagged=True))
    store.end_run("a3", status="abandoned", ended_at=2500.0)  # it raised: no outcome
    store.end_run("a1-branch", status="abandoned", ended_at=2500.0)  # a branch: not counted
    store.record_outcome("a1", False, recorded_at=3000.0)
    store.record_outcome("a2", True, recorded_at=3000.0)
    store.record_outcome("a1-branch", True, recorded_at=3000.0)
    summaries = store.run_summaries()  # the steps are still queued: they count
    assert [s.guard_key for s in summaries] == [KEY, "b/c/2"]
    a, b = summaries
    assert (a.runs, a.judged_steps, a.flagged_steps, a.flagged_runs) == (3, 4, 3, 2)
    assert (a.critic_errors, a.interventions, a.outcomes, a.failures) == (1, 1, 2, 1)
    assert (a.abandoned, b.abandoned) == (1, 0)
    assert a.flag_rate == 0.75
    assert (b.runs, b.judged_steps, b.flagged_steps, b.outcomes, b.flag_rate) == (1, 0, 0, 0, None)
    assert store.guard_keys() == []  # runs alone make no lifecycle record


def test_human_override_is_atomic_with_its_transition(store: Store) -> None:
    change = partial(override, state="disabled", reason="pager at 3am", actor="alice", now=5.0)
    record, transition = store.set_guard_state(KEY, change, initial())
    assert (record.state, record.version, record.updated_at, record.last_transition) == (
        GuardState.DISABLED,
        1,
        5.0,
        transition,
    )
    assert (transition.from_state, transition.to_state, transition.reason, transition.actor) == (
        GuardState.PILOT,
        GuardState.DISABLED,
        "pager at 3am",
        "alice",
    )
    assert transition.evidence["t"] == 0 and transition.evidence["net_low"] == -1.0
    assert store.get_guard(KEY) == record
    again = partial(override, state="pilot", reason="retry the pilot", now=6.0)
    record2, transition2 = store.set_guard_state(KEY, again, initial())
    assert (record2.state, record2.version) == (GuardState.PILOT, 2)
    assert store.transitions(KEY) == [transition, transition2]


def test_a_refused_override_changes_nothing(store: Store) -> None:
    store.set_guard_state(KEY, partial(override, state="enabled", reason="trust me", now=5.0), initial())
    before = store.get_guard(KEY)
    with pytest.raises(LifecycleError, match="already enabled"):
        store.set_guard_state(KEY, partial(override, state="enabled", reason="again", now=6.0), initial())
    assert store.get_guard(KEY) == before
    assert len(store.transitions(KEY)) == 1


def test_concurrent_completions_count_each_pair_once(store: Store) -> None:
    n_pairs, n_threads = 40, 6
    for i in range(n_pairs):
        store.open_pair(make_pair(f"p{i}", f"c{i}", f"t{i}"))
        with_outcomes(store, {f"c{i}": i % 3 == 0, f"t{i}": i % 2 == 0})
    barrier = threading.Barrier(n_threads)
    won: list[PairUpdate] = []
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        order = list(range(n_pairs))
        random.Random(seed).shuffle(order)
        try:
            barrier.wait()
            for i in order:
                update = store.complete_pair(f"p{i}", auto_rule(), initial(), at=200.0)
                if update is not None:
                    won.append(update)
        except BaseException as exc:
            errors.append(exc)

    _in_threads(work, n_threads)
    assert errors == []
    assert sorted(u.pair.pair_id for u in won) == sorted(f"p{i}" for i in range(n_pairs))
    guard = store.get_guard(KEY)
    assert guard is not None
    assert (guard.monitor.t, guard.version) == (n_pairs, n_pairs)
    expected = PairedCounts.from_pairs((i % 3 == 0, i % 2 == 0) for i in range(n_pairs))
    assert guard.counts == expected == PairedCounts(13, 13, 7, 7)
    assert sorted(u.guard.version for u in won) == list(range(1, n_pairs + 1))


def _harmful_pairs(n: int) -> list[tuple[bool, bool]]:
    """Seeded pairs from a harmful intervention: 30% disruptions, 5% recoveries."""
    rng = random.Random(7)
    pairs = []
    for _ in range(n):
        u = rng.random()
        pairs.append((True, False) if u < 0.30 else (False, True) if u < 0.35 else (u < 0.7, u < 0.7))
    return pairs


def test_replicas_complete_interleaved_pairs_exactly_once(store_factory: StoreFactory) -> None:
    """Two replicas (each its own guard and store connection) record the two arms of every pair at once."""
    n = 60
    pairs = _harmful_pairs(n)
    stores = [store_factory(), store_factory()]
    guards = [CriticGuard(ConstantCritic(0.7), mode="auto", store=s, lifecycle_ttl_s=0.0) for s in stores]
    try:
        for i in range(n):
            guards[i % 2].start_run(run_id=f"c{i}", arm=Arm.CONTROL)
            guards[(i + 1) % 2].start_run(run_id=f"t{i}", arm=Arm.TREATMENT)
            guards[i % 2].open_pair(f"c{i}", control_run_id=f"c{i}", treatment_run_id=f"t{i}", flagged=True)
        barrier = threading.Barrier(2)
        updates: list[list[PairUpdate]] = [[], []]
        errors: list[BaseException] = []

        def replica(k: int) -> None:
            try:
                barrier.wait()
                for i, (control, treatment) in enumerate(pairs):
                    # replica k records the control arm of even pairs and the treatment arm of odd ones, and v.v.
                    if (i + k) % 2 == 0:
                        updates[k] += guards[k].record_outcome(f"c{i}", control)
                        updates[k] += guards[k].record_outcome(f"t{i}", treatment)
                    else:
                        updates[k] += guards[k].record_outcome(f"t{i}", treatment)
                        updates[k] += guards[k].record_outcome(f"c{i}", control)
            except BaseException as exc:
                errors.append(exc)

        _in_threads(replica, 2)
        assert errors == []
        done = sorted(u.pair.pair_id for u in updates[0] + updates[1])
        assert done == sorted(f"c{i}" for i in range(n))  # every pair completed exactly once
        record = guards[0].lifecycle()
        assert record == guards[1].lifecycle()
        assert (record.monitor.t, record.version, record.counts) == (n, n, PairedCounts.from_pairs(pairs))
        transitions = guards[1].transitions()
        assert len(transitions) == 1
        assert (transitions[0].from_state, transitions[0].to_state) == (GuardState.PILOT, GuardState.DISABLED)
        assert [u.transition for u in updates[0] + updates[1] if u.transition is not None] == transitions
        assert record.state is GuardState.DISABLED
    finally:
        for guard in guards:
            guard.close()
        for opened in stores:
            opened.close()


def test_lifecycle_survives_a_restart(store_factory: StoreFactory) -> None:
    first = store_factory()
    with CriticGuard(ConstantCritic(0.7), mode="auto", store=first) as guard:
        for i, (control, treatment) in enumerate(_harmful_pairs(60)):
            guard.start_run(run_id=f"c{i}")
            guard.start_run(run_id=f"t{i}", arm=Arm.TREATMENT)
            guard.open_pair(f"c{i}", control_run_id=f"c{i}", treatment_run_id=f"t{i}", flagged=True)
            guard.record_outcome(f"c{i}", control)
            guard.record_outcome(f"t{i}", treatment)
        before = guard.lifecycle()
        transitions = guard.transitions()
    first.close()
    assert before.state is GuardState.DISABLED
    second = store_factory()
    try:
        with CriticGuard(ConstantCritic(0.7), mode="auto", store=second) as restarted:
            assert restarted.lifecycle() == before
            assert restarted.transitions() == transitions
            assert (restarted.acts(Arm.TREATMENT), restarted.serve_arm(), restarted.should_fork("x")) == (
                False,
                Arm.CONTROL,
                False,
            )
    finally:
        second.close()


# -- pilot bookkeeping (critic_guard.pilot) ---------------------------------------------------------------------------


def test_runs_of_task(store: Store) -> None:
    store.add_run(make_run("r2", task_id="t1", started_at=2.0, task={"task_id": "t1", "pilot_attempt": "a"}))
    store.add_run(make_run("r1", task_id="t1", started_at=1.0))
    store.add_run(make_run("r3", task_id="t2"))
    store.add_run(make_run("r4", guard_key="other/key/x", task_id="t1"))
    runs = store.runs_of_task(KEY, "t1")
    assert [r.run_id for r in runs] == ["r1", "r2"]
    assert runs[1].task == {"task_id": "t1", "pilot_attempt": "a"}
    assert store.runs_of_task(KEY, "missing") == []


def test_pilot_task_attempts_and_finishing(store: Store) -> None:
    first = store.start_pilot_task("p", "t1", attempt_id="a1", at=1.0)
    assert (first.status, first.attempt_id, first.attempts, first.abandoned, first.run_id) == (
        PilotTaskStatus.RUNNING,
        "a1",
        1,
        0,
        None,
    )
    assert not store.finish_pilot_task("p", "t1", attempt_id="stale", status="done", run_id="r0", at=2.0)
    again = store.start_pilot_task("p", "t1", attempt_id="a2", abandoned=2, at=3.0)  # a restart
    assert (again.attempt_id, again.attempts, again.abandoned, again.updated_at) == ("a2", 2, 2, 3.0)
    assert store.finish_pilot_task("p", "t1", attempt_id="a2", status="failed", run_id=None, error="boom", at=4.0)
    assert not store.finish_pilot_task("p", "t1", attempt_id="a2", status="done", run_id="r1", at=5.0)
    retried = store.start_pilot_task("p", "t1", attempt_id="a3", at=6.0)  # a failed task is tried again
    assert (retried.status, retried.attempts, retried.abandoned, retried.error) == (PilotTaskStatus.RUNNING, 3, 2, None)
    assert store.finish_pilot_task("p", "t1", attempt_id="a3", status=PilotTaskStatus.DONE, run_id="r3", at=7.0)
    done = store.start_pilot_task("p", "t1", attempt_id="a4", abandoned=5, at=8.0)  # done: left as it is
    assert (done.status, done.attempt_id, done.attempts, done.abandoned, done.run_id) == (
        PilotTaskStatus.DONE,
        "a3",
        3,
        2,
        "r3",
    )
    store.start_pilot_task("p", "t0", attempt_id="b1", at=9.0)
    store.start_pilot_task("other", "t1", attempt_id="c1", at=9.0)
    assert [(r.task_id, r.status) for r in store.pilot_tasks("p")] == [
        ("t0", PilotTaskStatus.RUNNING),
        ("t1", PilotTaskStatus.DONE),
    ]
    assert store.pilot_tasks("none") == []
    with pytest.raises(ValueError, match="not 'running'"):
        store.finish_pilot_task("p", "t0", attempt_id="b1", status="running", run_id=None, at=1.0)
    with pytest.raises(ValueError, match="abandoned must be >= 0"):
        store.start_pilot_task("p", "t2", attempt_id="x", abandoned=-1, at=1.0)


def test_pilot_task_rows_survive_a_restart(store_factory: StoreFactory) -> None:
    first = store_factory()
    first.start_pilot_task("p", "t1", attempt_id="a1", at=1.0)
    first.start_pilot_task("p", "t2", attempt_id="a2", at=1.0)
    first.finish_pilot_task("p", "t2", attempt_id="a2", status="done", run_id="r2", at=2.0)
    first.close()
    second = store_factory()
    try:
        rows = second.pilot_tasks("p")
        assert [(r.task_id, r.status, r.attempt_id, r.run_id) for r in rows] == [
            ("t1", PilotTaskStatus.RUNNING, "a1", None),
            ("t2", PilotTaskStatus.DONE, "a2", "r2"),
        ]
    finally:
        second.close()
