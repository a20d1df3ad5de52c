"""The pilot runner without a framework: a small adapter that records runs and pairs through the guard, as an
integration does, so bookkeeping, resume and the report are tested on their own (the LangGraph runs are in
integrations/langgraph/tests/test_pilot_runner.py and test_pilot_crash.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from critic_guard.guard import CriticGuard
from critic_guard.pilot import (
    ABANDONED_REASON,
    PilotSuite,
    PilotTask,
    SuiteError,
    Tally,
    load_suite,
    run_pilot,
)
from critic_guard.store import SQLiteStore
from critic_guard.store.base import PairStatus, PilotTaskStatus
from critic_guard.types import Arm, StepContext, Verdict

# (control success, treatment success) by task kind; "clean" is never flagged (one run stands for both arms)
OUTCOMES = {"clean": (True, True), "recover": (False, True), "disrupt": (True, False), "lost": (False, False)}


class Crash(BaseException):
    """Stands for ``kill -9``: it escapes the runner (which only handles ``Exception``), leaving rows running."""


def critic(ctx: StepContext) -> Verdict:
    return Verdict(0.5)


class FakeAdapter:
    """Runs a task as an integration would: production run, and for flagged kinds a shadow branch and a pair.

    ``crash_at``: the task id whose branch is started but never finished (then :class:`Crash`).
    ``fail_at``: the task id whose production run raises after its pair was opened.
    """

    def __init__(self, guard: CriticGuard, crash_at: str | None, fail_at: str | None) -> None:
        self.guard = guard
        self.crash_at = crash_at
        self.fail_at = fail_at
        self.runs: list[str] = []
        self.crashed = False

    async def run_task(self, task: PilotTask) -> None:
        if self.crashed:  # a killed process runs nothing more
            raise Crash
        guard = self.guard
        self.runs.append(task.task_id)
        control, treatment = OUTCOMES[str(task.data["kind"])]
        prod = guard.start_run(task=task.metadata)
        if task.data["kind"] == "clean":
            guard.open_pair(prod, control_run_id=prod, treatment_run_id=prod, flagged=False)
            guard.end_run(prod, success=control)
            return
        branch = guard.start_run(task=task.metadata, arm=Arm.TREATMENT, parent_run_id=prod, fork_step=1)
        guard.open_pair(prod, control_run_id=prod, treatment_run_id=branch, flagged=True, fork_step=1)
        guard.end_run(prod, success=control)
        if task.task_id == self.fail_at:
            raise RuntimeError("agent exploded")
        await asyncio.sleep(0)
        if task.task_id == self.crash_at:
            self.crashed = True
            raise Crash
        guard.end_run(branch, success=treatment)


def fake_suite(kinds: list[str], *, crash_at: str | None = None, fail_at: str | None = None) -> PilotSuite:
    adapters: list[FakeAdapter] = []

    @asynccontextmanager
    async def adapter(guard: CriticGuard) -> AsyncIterator[FakeAdapter]:
        adapters.append(FakeAdapter(guard, crash_at, fail_at))
        yield adapters[-1]

    tasks = [{"task_id": f"t{i}", "kind": kind} for i, kind in enumerate(kinds)]
    suite = PilotSuite("fake", tasks, critic, adapter)
    object.__setattr__(suite, "adapters", adapters)  # for assertions: which tasks each run of the pilot ran
    return suite


def cli_suite(seed: int = 0) -> PilotSuite:
    """The entry point of the CLI tests (``test_pilot_core:cli_suite``): seed 1 adds a failing task."""
    kinds = ["clean", "recover", "recover", "disrupt", "lost", "clean"]
    return fake_suite(kinds, fail_at="t3" if seed == 1 else None)


KINDS = ["clean", "recover", "disrupt", "clean", "recover", "lost", "recover", "clean"]


def run(suite: PilotSuite, path: Path, **kwargs: Any) -> Any:
    with suite.guard(mode="pilot", store=f"sqlite:///{path}") as guard:
        result = asyncio.run(run_pilot(suite, guard, **kwargs))
        return result, guard.lifecycle(), guard.pairs()


def test_a_pilot_counts_every_task_once_and_a_rerun_runs_nothing(tmp_path: Path) -> None:
    suite = fake_suite(KINDS)
    result, record, pairs = run(suite, tmp_path / "g.db", concurrency=3)
    t = result.tally
    assert (t.total, t.done, t.failed, result.ran, result.skipped) == (8, 8, 0, 8, 0)
    assert (t.n00, t.n01, t.n10, t.n11, t.flagged) == (1, 3, 1, 3, 5)
    assert (t.incomplete, t.abandoned, t.open, t.unpaired) == (0, 0, 0, 0)
    assert record.counts == t.counts and len(pairs) == 8
    assert result.report is not None and result.report.counts == t.counts
    assert result.to_dict()["pairs"] == {"n00": 1, "n01": 3, "n10": 1, "n11": 3}

    again, record_again, _ = run(suite, tmp_path / "g.db")
    assert (again.ran, again.skipped, again.tally.counts) == (0, 8, t.counts)
    assert record_again.counts == t.counts  # nothing counted twice
    assert [len(a.runs) for a in suite.adapters] == [8, 0]  # type: ignore[attr-defined]


def test_after_a_crash_the_rerun_abandons_open_pairs_and_runs_only_what_is_left(tmp_path: Path) -> None:
    reference, _, _ = run(fake_suite(KINDS), tmp_path / "reference.db")
    path = tmp_path / "g.db"
    with pytest.raises(Crash):
        run(fake_suite(KINDS, crash_at="t4"), path, concurrency=1)
    with CriticGuard(critic, agent_name="fake", mode="pilot", store=f"sqlite:///{path}") as guard:
        rows = {r.task_id: r for r in guard.store.pilot_tasks(f"fake|{guard.guard_key}")}  # type: ignore[union-attr]
        assert [rows[f"t{i}"].status for i in range(5)] == [PilotTaskStatus.DONE] * 4 + [PilotTaskStatus.RUNNING]
        assert all(row.status is PilotTaskStatus.RUNNING for tid, row in rows.items() if tid > "t4")
        assert [p.status for p in guard.pairs()] == [PairStatus.COMPLETE] * 4 + [PairStatus.OPEN]

    resumed_suite = fake_suite(KINDS)
    resumed, record, pairs = run(resumed_suite, path, concurrency=2)
    # each task left runs exactly once; in which order two at a time start is the scheduler's (each start is a store
    # write in a worker thread, so t7's may land before t6's)
    assert sorted(resumed_suite.adapters[0].runs) == ["t4", "t5", "t6", "t7"]  # type: ignore[attr-defined]
    assert (resumed.ran, resumed.skipped) == (4, 4)
    assert resumed.tally.counts == reference.tally.counts == record.counts  # nothing lost, nothing twice
    assert (resumed.tally.abandoned, resumed.tally.incomplete) == (1, 0)
    [abandoned] = [p for p in pairs if p.status is PairStatus.INCOMPLETE]
    assert (abandoned.reason, abandoned.task_id) == (ABANDONED_REASON, "t4")
    assert record.incomplete == 1


def test_a_crash_after_the_pair_completed_keeps_the_task(tmp_path: Path) -> None:
    """The row still says running, but the store shows the task finished: it is done, not run again."""
    path = tmp_path / "g.db"
    with CriticGuard(critic, agent_name="fake", mode="pilot", store=f"sqlite:///{path}") as guard:
        store, key = guard.store, f"fake|{guard.guard_key}"
        assert store is not None
        store.start_pilot_task(key, "t0", attempt_id="interrupted", at=1.0)
        task = PilotTask("t0", "interrupted", {"task_id": "t0", "kind": "recover"})
        asyncio.run(FakeAdapter(guard, None, None).run_task(task))  # then the crash, before the row says done
        [row] = store.pilot_tasks(key)
        [pair] = guard.pairs()
        assert (row.status, pair.status) == (PilotTaskStatus.RUNNING, PairStatus.COMPLETE)
    suite = fake_suite(["recover"])
    resumed, record, _ = run(suite, path)
    assert suite.adapters[0].runs == []  # type: ignore[attr-defined]
    assert (resumed.ran, resumed.skipped, resumed.tally.n01, resumed.tally.abandoned) == (0, 1, 1, 0)
    assert record.counts.n == 1 and record.incomplete == 0
    with CriticGuard(critic, agent_name="fake", mode="pilot", store=f"sqlite:///{path}") as guard:
        assert guard.store is not None
        [row] = guard.store.pilot_tasks(key)
        assert (row.status, row.run_id, row.attempts) == (PilotTaskStatus.DONE, pair.pair_id, 1)


def test_a_failing_task_is_reported_excluded_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    failed, record, pairs = run(fake_suite(["recover", "recover"], fail_at="t1"), path)
    assert (failed.tally.done, failed.tally.failed, failed.tally.n01) == (1, 1, 1)
    [excluded] = [p for p in pairs if p.status is PairStatus.INCOMPLETE]
    assert excluded.reason == "pilot task failed: RuntimeError"  # the message may quote content: capture is off
    with SQLiteStore(path) as store:
        assert {(r.task_id, r.error) for r in store.pilot_tasks(failed.pilot_key)} == {
            ("t0", None),
            ("t1", "RuntimeError"),
        }
    assert record.counts.n == 1
    fixed = fake_suite(["recover", "recover"])
    retried, record, _ = run(fixed, path)
    assert fixed.adapters[0].runs == ["t1"]  # type: ignore[attr-defined]
    assert (retried.tally.failed, retried.tally.n01, record.counts.n) == (0, 2, 2)


def test_limit_progress_and_validation(tmp_path: Path) -> None:
    seen: list[tuple[int, str | None]] = []

    class Recorder:
        def update(self, tally: Tally, verdict: str | None) -> None:
            seen.append((tally.done, verdict))

    result, _, _ = run(fake_suite(KINDS), tmp_path / "g.db", limit=3, concurrency=1, progress=Recorder())
    assert (result.tally.total, result.tally.done) == (3, 3)
    assert seen == [(0, None), (1, "inconclusive"), (2, "inconclusive"), (3, "inconclusive")]
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        run(fake_suite(KINDS), tmp_path / "g.db", concurrency=0)
    with pytest.raises(ValueError, match="tasks must be >= 1"):
        run(fake_suite(KINDS), tmp_path / "g.db", limit=0)
    suite = fake_suite(KINDS)
    with suite.guard(mode="pilot", store=None) as guard, pytest.raises(ValueError, match="needs a store"):
        asyncio.run(run_pilot(suite, guard))


@pytest.mark.parametrize(
    ("tasks", "options", "message"),
    [
        ([], {}, "has no tasks"),
        ([{"input": "x"}], {}, "task 0 has no 'task_id'"),
        ([{"task_id": 1}, {"id": "1"}], {}, "task id '1' appears twice"),
        (["t1"], {}, "task 0 is a str, not a mapping"),
        ([{"task_id": 1}], {"mode": "on", "store": None}, "may not set mode, store"),
    ],
)
def test_suite_validation(tasks: list[Any], options: Mapping[str, Any], message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        PilotSuite("s", tasks, critic, fake_suite(KINDS).adapter, guard_options=options)


def test_load_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_suites.py").write_text(
        "from test_pilot_core import fake_suite\n"
        "def plain():\n    return fake_suite(['clean'])\n"
        "def seeded(seed):\n    return fake_suite(['clean'] * (seed + 1))\n"
        "def wrong():\n    return 42\n"
    )
    assert len(load_suite("my_suites:plain", seed=3).tasks) == 1
    assert len(load_suite("my_suites:seeded", seed=3).tasks) == 4
    for spec, message in [
        ("my_suites", "as 'module:function'"),
        ("no_such_module_here:x", "cannot import suite module 'no_such_module_here'"),
        ("my_suites:missing", "has no callable 'missing'"),
        ("my_suites:wrong", "returned a int, not a critic_guard.pilot.PilotSuite"),
    ]:
        with pytest.raises(SuiteError, match=message):
            load_suite(spec)
