"""The store test suite every backend must pass.

A backend's test module provides a ``store`` fixture (a fresh, empty store) and star-imports these tests, as
LangGraph does for its checkpoint savers. Nothing here may depend on a particular backend.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from critic_guard.store import (
    OutcomeConflictError,
    OutcomeRecord,
    RunRecord,
    StepRecord,
    Store,
    UnknownRunError,
)
from critic_guard.types import Action, Arm

__all__ = [
    "make_run",
    "make_step",
    "test_add_run_is_idempotent",
    "test_concurrent_writes_from_threads",
    "test_end_run",
    "test_outcomes",
    "test_run_round_trip",
    "test_runs_by_guard_key",
    "test_steps_round_trip_in_order",
    "test_unknown_runs",
]


def make_run(run_id: str, guard_key: str = "agent/critic/abcd1234", started_at: float = 1000.0, **kw: Any) -> RunRecord:
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

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.runs()) == n_threads
    for t in range(n_threads):
        steps = store.steps_of(f"run-{t}")
        assert [s.step for s in steps] == list(range(per_thread))
        assert [s.p_fail for s in steps] == [i / per_thread for i in range(per_thread)]
        outcome = store.get_outcome(f"run-{t}")
        assert outcome is not None and outcome.success is (t % 2 == 0)
