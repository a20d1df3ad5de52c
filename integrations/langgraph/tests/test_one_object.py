"""The one-object set-up: ``CriticGuardMiddleware(critic, mode=..., judge=..., shadow_tools=..., store=...)`` in
``create_agent``'s list is all a user writes, in every mode, sync and async; nothing else to call (no ``attach``);
invalid set-ups fail at construction; ``close()`` / ``aclose()`` leave no pair open and print nothing.

The calculator task with ``bad_step=2`` (``calc_agent``): unguarded it answers 44; a rollback with feedback at
step 2 makes it answer 42. The oracle critic flags exactly that step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from calc_agent import RIGHT, SHADOW_TOOLS, build_agent, calc_model, oracle_critic, task_input, thread, wrong_answer
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store.base import PairStatus
from critic_guard.store.sqlite import SQLiteStore
from critic_guard.types import Action
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.fork import ForkError
from critic_guard_langgraph.judging import UNKNOWN_FLAG

MODES = ["off", "observe", "on", "pilot", "auto"]
ANSWER = {"off": wrong_answer(2), "observe": wrong_answer(2), "on": RIGHT, "pilot": wrong_answer(2), "auto": "44"}


def judge(task: Any, state: Any) -> bool:
    return bool(state["messages"][-1].text == RIGHT)


def one_object(mode: str, db: Path, **settings: Any) -> CriticGuardMiddleware[Any, Any]:
    """What a user writes: one middleware, every setting by keyword."""
    return CriticGuardMiddleware(
        oracle_critic,
        mode=mode,
        tau=0.6,
        action="rollback",
        min_step=0,
        agent_name="calc",
        judge=judge,
        shadow_tools=SHADOW_TOOLS,
        store=f"sqlite:///{db}",
        **settings,
    )


def check_store(mode: str, db: Path, key: str) -> None:
    """What the store holds after ``close()``: read by a fresh connection, as ``critic-guard status`` would."""
    store = SQLiteStore(str(db))
    try:
        runs = store.runs(key)
        if mode == "off":
            assert runs == []
            return
        production = [r for r in runs if r.parent_run_id is None]
        assert len(production) == 1
        actions = [s.action for s in store.steps_of(production[0].run_id)]
        assert len(actions) == (6 if mode == "on" else 5)  # five steps judged; "on" retried step 2 once
        assert actions.count(Action.ROLLBACK) == (1 if mode == "on" else 0)
        pairs = store.pairs(key)
        if mode in ("pilot", "auto"):  # the shadow treatment branch finished before close() returned
            [pair] = pairs
            assert (pair.status, pair.control_success, pair.treatment_success) == (PairStatus.COMPLETE, False, True)
            assert len(runs) == 2
        else:
            assert pairs == [] and len(runs) == 1
    finally:
        store.close()


def stored_pairs(db: Path, key: str) -> list[Any]:
    """The guard's pairs, read by a fresh connection (the middleware closed the guard it built)."""
    store = SQLiteStore(str(db))
    try:
        return store.pairs(key)
    finally:
        store.close()


@pytest.mark.parametrize("mode", MODES)
def test_one_object_in_every_mode(mode: str, tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    middleware = one_object(mode, db)
    model, _ = calc_model(bad_step=2)
    agent = build_agent(model, [middleware], InMemorySaver())
    out = agent.invoke(task_input(), thread("prod"))
    assert out["messages"][-1].text == ANSWER[mode]
    key = middleware.guard.guard_key
    middleware.close()
    check_store(mode, db, key)


@pytest.mark.parametrize("mode", MODES)
async def test_one_object_in_every_mode_async(mode: str, tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    middleware = one_object(mode, db)
    model, _ = calc_model(bad_step=2)
    agent = build_agent(model, [middleware], InMemorySaver())
    out = await agent.ainvoke(task_input(), thread("prod"))
    assert out["messages"][-1].text == ANSWER[mode]
    key = middleware.guard.guard_key
    await middleware.aclose()
    check_store(mode, db, key)


def test_branches_fork_through_the_running_graphs_own_checkpointer(tmp_path: Path) -> None:
    """As on the Agent Server: the graph that runs is a copy of the module-level one with another checkpointer.
    The branch must clone the checkpoint the run actually wrote, and live beside it."""
    middleware = one_object("pilot", tmp_path / "guard.db")
    model, _ = calc_model(bad_step=2)
    module_saver, server_saver = InMemorySaver(), InMemorySaver()
    module_level = build_agent(model, [middleware], module_saver)
    served = module_level.copy(update={"checkpointer": server_saver})
    served.invoke(task_input(), thread("prod"))
    middleware.close()
    [pair] = stored_pairs(tmp_path / "guard.db", middleware.guard.guard_key)
    assert (pair.status, pair.control_success, pair.treatment_success) == (PairStatus.COMPLETE, False, True)
    threads = {c.config["configurable"]["thread_id"] for c in server_saver.list(None)}
    assert threads == {"prod", f"prod~shadow~{pair.treatment_run_id}"}
    assert list(module_saver.list(None)) == []


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        (
            {"mode": "pilot", "judge": None},
            ValueError,
            r"mode 'pilot' compares outcomes .* judge=.* outcomes='external'",
        ),
        ({"mode": "auto", "judge": None}, ValueError, r"mode 'auto' compares outcomes"),
        ({"mode": "pilot", "outcomes": "external"}, ValueError, r"give a judge or outcomes='external'.*not both"),
        ({"mode": "on", "outcomes": "later"}, ValueError, r"outcomes must be 'judge' or 'external'"),
        ({"mode": "on", "polcy": Policy()}, TypeError, r"unknown setting 'polcy'; did you mean 'policy'\?"),
        ({"mode": "on", "taux": 0.5}, TypeError, r"unknown setting 'taux'; did you mean 'tau'\?"),
        ({"mode": "on", "policy": Policy(), "min_step": 1}, TypeError, r"either policy=Policy\(...\) or its fields"),
        ({"mode": "sometimes"}, ValidationError, r"mode"),
        ({"mode": "on", "tau": 1.5}, ValidationError, r"tau"),
    ],
)
def test_a_setup_that_cannot_work_fails_at_construction(
    settings: dict[str, Any], error: type[Exception], message: str, tmp_path: Path
) -> None:
    arguments: dict[str, Any] = {"judge": judge, "store": f"sqlite:///{tmp_path / 'g.db'}", **settings}
    if "policy" in settings:
        arguments.pop("judge")
    with pytest.raises(error, match=message):
        CriticGuardMiddleware(oracle_critic, **arguments)


def test_pilot_with_external_outcomes_is_a_valid_setup(tmp_path: Path) -> None:
    middleware = CriticGuardMiddleware(oracle_critic, mode="pilot", outcomes="external", store=None)
    try:
        assert middleware.guard.config.mode.value == "pilot" and middleware.runner is not None
    finally:
        middleware.close()


def test_a_ready_guard_is_taken_as_it_is_and_left_open(tmp_path: Path) -> None:
    guard = CriticGuard(oracle_critic, mode="on", store=f"sqlite:///{tmp_path / 'g.db'}")
    with pytest.raises(TypeError, match=r"tau: these configure the guard"):
        CriticGuardMiddleware(guard, tau=0.5)
    with pytest.raises(TypeError, match="as the first argument or as guard=, not both"):
        CriticGuardMiddleware(guard, guard=guard)
    middleware = CriticGuardMiddleware(guard=guard)
    assert middleware.guard is guard
    middleware.close()  # the caller owns the guard: still usable after the middleware closes
    assert guard.store is not None and guard.store.runs() == []
    guard.close()


def test_no_critic_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"needs a critic"):
        CriticGuardMiddleware(mode="on")


def test_attach_still_works_but_is_deprecated(tmp_path: Path) -> None:
    middleware = one_object("pilot", tmp_path / "guard.db")
    model, _ = calc_model(bad_step=2)
    with pytest.warns(DeprecationWarning, match="attach"):
        agent = middleware.attach(build_agent(model, [middleware], InMemorySaver()))
    agent.invoke(task_input(), thread("prod"))
    middleware.close()
    assert [p.status for p in stored_pairs(tmp_path / "guard.db", middleware.guard.guard_key)] == [PairStatus.COMPLETE]


def test_one_instance_in_two_agents_is_refused_at_the_fork(tmp_path: Path) -> None:
    middleware = one_object("pilot", tmp_path / "guard.db")
    first = build_agent(calc_model(bad_step=2)[0], [middleware], InMemorySaver())
    second = build_agent(calc_model(bad_step=2)[0], [middleware], InMemorySaver())
    with pytest.raises(ForkError, match="listed in 2 different agents"):
        first.invoke(task_input(), thread("prod"))
    assert second is not None
    middleware.close()


def test_sync_close_waits_for_branches_on_a_loop_in_another_thread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A service's loop runs in its own thread; shutdown code calls ``close()`` from sync code: the async branches
    finish on their loop, every pair completes, nothing is printed."""
    middleware = one_object("pilot", tmp_path / "guard.db")
    agent = build_agent(calc_model(bad_step=2)[0], [middleware], InMemorySaver())
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    try:
        for i in range(3):
            asyncio.run_coroutine_threadsafe(agent.ainvoke(task_input(), thread(f"prod-{i}")), loop).result(30)
        with caplog.at_level(logging.WARNING):
            middleware.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        serving.join(10)
        loop.close()
    pairs = stored_pairs(tmp_path / "guard.db", middleware.guard.guard_key)
    assert [p.status for p in pairs] == [PairStatus.COMPLETE] * 3
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Traceback" not in capfd.readouterr().err


def test_close_after_the_loop_ended_leaves_no_pair_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """``asyncio.run(agent.ainvoke(...))`` ends its loop, cancelling branches still running, and background
    verdicts already started: their pairs are excluded with the reason, never left open, and ``close()`` afterwards
    prints no traceback. (Which of the two a loaded machine cuts off is timing; either is excluded.)"""
    db = tmp_path / "guard.db"
    middleware = one_object("pilot", db)
    agent = build_agent(calc_model(bad_step=2)[0], [middleware], InMemorySaver())
    for i in range(3):
        asyncio.run(agent.ainvoke(task_input(), thread(f"prod-{i}")))
    with caplog.at_level(logging.WARNING):
        middleware.close()
    pairs = stored_pairs(db, middleware.guard.guard_key)
    assert len(pairs) == 3
    for pair in pairs:
        assert pair.status is PairStatus.COMPLETE or (
            pair.status is PairStatus.INCOMPLETE
            and pair.reason in {"branch cancelled before it finished", UNKNOWN_FLAG}
        )
    assert [r for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in capfd.readouterr().err
