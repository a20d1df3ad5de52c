"""CriticGuardMiddleware on a real create_agent graph: real tools, the scripted model, a real SQLite store."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from calc_agent import (
    RIGHT,
    TASK,
    TOOLS,
    GuardFactory,
    assert_rolled_back_at_step_2,
    assert_tool_groups_adjacent,
    build_agent,
    calc_model,
    comparable,
    final_answer,
    flags_unchecked_answers,
    notes,
    oracle_critic,
    summary,
    task_input,
    thread,
    wrong_answer,
)
from langchain.agents import create_agent
from langchain.agents.middleware.types import AgentMiddleware
from langchain.agents.structured_output import ToolStrategy
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, interrupt
from pydantic import BaseModel

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store.base import RunRecord, StepRecord
from critic_guard.types import Action, Arm, StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call
from tests.support import StubbornCritic

NONE, ROLLBACK, APPEND = Action.NONE, Action.ROLLBACK, Action.APPEND


def steps_of(guard: CriticGuard) -> list[StepRecord]:
    assert guard.store is not None
    [run] = guard.store.runs(guard.guard_key)
    return guard.store.steps_of(run.run_id)


def runs_of(guard: CriticGuard) -> list[RunRecord]:
    assert guard.store is not None
    return guard.store.runs()


def rows_of(guard: CriticGuard) -> dict[str, list[StepRecord]]:
    assert guard.store is not None
    return {r.run_id: guard.store.steps_of(r.run_id) for r in guard.store.runs(guard.guard_key)}


def proposals(messages: list[Any]) -> list[dict[str, Any]]:
    return [m.tool_calls[0]["args"] for m in messages if isinstance(m, AIMessage) and m.tool_calls]


RIGHT_PROPOSALS = [{"a": 2, "b": 3}, {"a": 5, "b": 4}, {"a": 20, "b": 1}, {"a": 21, "b": 2}]


# -- off and observe change nothing ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "observe"])
def test_off_and_observe_end_in_the_unguarded_state(mode: str, checkpointer: Any, make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    plain = build_agent(model).invoke(task_input(), thread())
    judged: list[int] = []

    def critic(ctx: StepContext) -> Verdict:
        judged.append(ctx.step)
        return oracle_critic(ctx)

    guard = make_guard(critic, mode=mode, policy=Policy(min_step=0))
    middleware = CriticGuardMiddleware(guard)
    guarded = build_agent(model, [middleware], checkpointer).invoke(task_input(), thread())
    middleware.close()  # observe judges off the user's path: close() waits for the background verdicts

    assert comparable(guarded["messages"]) == comparable(plain["messages"])
    assert set(guarded) == set(plain) == {"messages"}  # private counters stay out of the output
    assert final_answer(guarded["messages"]) == wrong_answer(2) == "44"
    assert guard.store is not None
    if mode == "off":
        assert judged == []
        assert guard.store.runs() == []
    else:
        assert judged == [0, 1, 2, 3, 4]
        assert summary(guard) == [
            (0, 0, NONE, "below_tau"),
            (1, 0, NONE, "below_tau"),
            (2, 0, NONE, "observe"),
            (3, 0, NONE, "below_tau"),
            (4, 0, NONE, "below_tau"),
        ]
        [run] = guard.store.runs()
        assert (run.status, run.arm, run.task) == ("completed", Arm.CONTROL, {})  # content capture is off


@pytest.mark.parametrize("mode", ["off", "observe"])
async def test_off_and_observe_end_in_the_unguarded_state_async(
    mode: str, acheckpointer: Any, make_guard: GuardFactory
) -> None:
    model, _ = calc_model(bad_step=2)
    plain = await build_agent(model).ainvoke(task_input(), thread())
    guard = make_guard(oracle_critic, mode=mode, policy=Policy(min_step=0))
    agent = build_agent(model, [CriticGuardMiddleware(guard)], acheckpointer)
    guarded = await agent.ainvoke(task_input(), thread())
    assert comparable(guarded["messages"]) == comparable(plain["messages"])
    assert final_answer(guarded["messages"]) == "44"
    assert len(await asyncio.to_thread(runs_of, guard)) == (0 if mode == "off" else 1)


# -- ROLLBACK -----------------------------------------------------------------------------------------------------


def check_rollback(guard: CriticGuard, out: dict[str, Any], calls: list[list[Any]]) -> None:
    messages = out["messages"]
    assert final_answer(messages) == RIGHT
    assert proposals(messages) == RIGHT_PROPOSALS  # the withdrawn {"a": 20, "b": 2} never ran
    # the feedback sits where the retry saw it: after the last tool result, before the retried step
    at = assert_rolled_back_at_step_2(guard, messages)
    # model calls: steps 0, 1, 2 (withdrawn), 2 (retry), 3, 4; the retry was the first to see the feedback, last
    assert len(calls) == 6
    assert [i for i, c in enumerate(calls) if notes(c)] == [3, 4, 5]
    assert calls[3][-1] == messages[at] and calls[3][:-1] == calls[2]


def test_rollback_withdraws_the_flagged_step_and_the_retry_succeeds(
    checkpointer: Any, make_guard: GuardFactory
) -> None:
    model, calls = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="rollback"))
    agent = build_agent(model, [CriticGuardMiddleware(guard)], checkpointer)
    out = agent.invoke(task_input(), thread())
    check_rollback(guard, out, calls)
    if checkpointer is not None:
        record = agent.get_state(thread()).values["critic_guard"]
        assert {
            k: record[k]
            for k in ("run_id", "arm", "task", "step", "interventions", "last_intervention_step", "warning")
        } == {
            "run_id": None,  # ended
            "arm": "treatment",
            "task": {"input": TASK},
            "step": 5,
            "interventions": 1,
            "last_intervention_step": 2,
            "warning": None,
        }


async def test_rollback_withdraws_the_flagged_step_and_the_retry_succeeds_async(
    acheckpointer: Any, make_guard: GuardFactory
) -> None:
    model, calls = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="rollback"))
    out = await build_agent(model, [CriticGuardMiddleware(guard)], acheckpointer).ainvoke(task_input(), thread())
    check_rollback(guard, out, calls)


def test_silent_rollback_loops_end_when_the_budget_is_spent(make_guard: GuardFactory) -> None:
    # A deterministic model re-proposes the same step after a silent rollback: only the budget ends the loop.
    model, calls = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(feedback=False, max_interventions=3))
    out = build_agent(model, [CriticGuardMiddleware(guard)]).invoke(task_input(), thread())
    assert final_answer(out["messages"]) == wrong_answer(2)
    assert not any(is_guard_note(m) for c in calls for m in c)
    assert [r for r in summary(guard) if r[0] == 2] == [
        (2, 0, ROLLBACK, "flag"),
        (2, 1, ROLLBACK, "flag"),
        (2, 2, ROLLBACK, "flag"),
        (2, 3, NONE, "budget_exhausted"),
    ]


def test_no_intervention_before_min_step(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=1)
    guard = make_guard(oracle_critic, mode="on")  # paper default: min_step=2
    out = build_agent(model, [CriticGuardMiddleware(guard)]).invoke(task_input(), thread())
    assert final_answer(out["messages"]) == wrong_answer(1)
    assert summary(guard)[1] == (1, 0, NONE, "before_min_step")
    assert all(action is NONE for _, _, action, _ in summary(guard))


def test_rollbacks_take_no_graph_steps(make_guard: GuardFactory) -> None:
    # Retries happen inside the model node: 20 of them fit under a recursion limit of 5 (3 nodes per run).
    model = ScriptedChatModel.from_script(["done"])
    guard = make_guard(lambda ctx: 0.9, mode="on", policy=Policy(min_step=0, max_interventions=20, feedback=False))
    agent = create_agent(model, [], middleware=[CriticGuardMiddleware(guard)])
    out = agent.invoke(task_input(), {"recursion_limit": 5})
    assert final_answer(out["messages"]) == "done"
    assert [m.text for m in out["messages"]] == [TASK, "done"]  # the 20 withdrawn proposals left no trace
    assert summary(guard) == [(0, i, ROLLBACK, "flag") for i in range(20)] + [(0, 20, NONE, "budget_exhausted")]


# -- APPEND -------------------------------------------------------------------------------------------------------


def check_append(out: dict[str, Any], calls: list[list[Any]]) -> None:
    messages = out["messages"]
    assert proposals(messages)[2] == {"a": 20, "b": 2}  # the flagged step ran
    assert final_answer(messages) == wrong_answer(2)
    [at] = notes(messages)  # after the flagged step's tool result, before the next step
    assert isinstance(messages[at - 1], ToolMessage) and messages[at - 1].text == "22"
    assert isinstance(messages[at + 1], AIMessage) and messages[at + 1].tool_calls[0]["args"] == {"a": 22, "b": 2}
    assert messages[at].text.startswith("Warning from a reviewer")
    # model calls: steps 0..4; step 3 was the first to see the warning, at the end of its input
    assert [i for i, c in enumerate(calls) if notes(c)] == [3, 4]
    assert calls[3][-1] == messages[at] and isinstance(calls[3][-2], ToolMessage)
    for model_input in calls:
        assert_tool_groups_adjacent(model_input)
    assert_tool_groups_adjacent(messages)


def test_append_runs_the_step_and_warns_after_its_tool_results(checkpointer: Any, make_guard: GuardFactory) -> None:
    model, calls = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="append"))
    out = build_agent(model, [CriticGuardMiddleware(guard)], checkpointer).invoke(task_input(), thread())
    check_append(out, calls)
    assert [r[:3] for r in summary(guard)] == [(0, 0, NONE), (1, 0, NONE), (2, 0, APPEND), (3, 0, NONE), (4, 0, NONE)]


async def test_append_runs_the_step_and_warns_after_its_tool_results_async(
    acheckpointer: Any, make_guard: GuardFactory
) -> None:
    model, calls = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="append"))
    out = await build_agent(model, [CriticGuardMiddleware(guard)], acheckpointer).ainvoke(task_input(), thread())
    check_append(out, calls)


@pytest.mark.parametrize("feedback", [True, False])
def test_append_on_a_final_answer_reenters_the_model_once(feedback: bool, make_guard: GuardFactory) -> None:
    model, calls = calc_model(final_suffix_after_note=" (checked)")
    guard = make_guard(flags_unchecked_answers, mode="on", policy=Policy(action="append", feedback=feedback))
    out = build_agent(model, [CriticGuardMiddleware(guard)]).invoke(task_input(), thread())
    answers = [m.text for m in out["messages"] if isinstance(m, AIMessage) and not m.tool_calls]
    if feedback:
        assert answers == ["42", "42 (checked)"]
        assert notes(out["messages"]) == [len(out["messages"]) - 2]  # between the two answers
        assert is_guard_note(calls[-1][-1]) and calls[-1][-2].text == "42"
        assert [r[:3] for r in summary(guard)][-2:] == [(4, 0, APPEND), (5, 0, NONE)]
    else:  # a silent warning on a final answer has nothing to show: the run just ends
        assert answers == ["42"]
        assert [r[:3] for r in summary(guard)][-1] == (4, 0, APPEND)


def test_budget_and_cooldown_hold_across_steps(make_guard: GuardFactory) -> None:
    model, _ = calc_model()
    policy = Policy(action="append", min_step=0, max_interventions=2, cooldown=1)
    guard = make_guard(lambda ctx: 0.9, mode="on", policy=policy)
    out = build_agent(model, [CriticGuardMiddleware(guard)]).invoke(task_input(), thread())
    assert final_answer(out["messages"]) == RIGHT
    assert [r[2:] for r in summary(guard)] == [
        (APPEND, "flag"),
        (NONE, "cooldown"),
        (APPEND, "flag"),
        (NONE, "budget_exhausted"),
        (NONE, "budget_exhausted"),
    ]


# -- failing critics fail open ------------------------------------------------------------------------------------


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets hung sync critics return at the end of the test."""
    event = threading.Event()
    yield event
    event.set()


def failing_critic(kind: str, release: threading.Event, returned: list[int]) -> Any:
    """A critic failing in the way ``kind`` names; a hanging one appends to ``returned`` when it finally returns
    (at ``release`` or after 60 s), so a run that ends with ``returned`` empty did not wait for it."""
    if kind == "raises":
        return lambda ctx: 1 / 0
    if kind == "garbage":
        return lambda ctx: "looks bad"
    if kind == "out_of_range":
        return lambda ctx: 7.5
    if kind == "hangs":

        def hangs(ctx: StepContext) -> float:
            release.wait(60)
            returned.append(ctx.step)
            return 0.9

        return hangs

    async def hangs_async(ctx: StepContext) -> float:
        await asyncio.sleep(60)
        returned.append(ctx.step)
        return 0.9

    return hangs_async


FAILURES = ["raises", "garbage", "out_of_range", "hangs", "hangs_async"]


@pytest.mark.parametrize("kind", FAILURES)
def test_a_failing_critic_never_breaks_or_stalls_the_run(
    kind: str, release: threading.Event, make_guard: GuardFactory
) -> None:
    model, _ = calc_model(bad_step=2)
    plain = build_agent(model).invoke(task_input(), thread())
    policy = Policy(min_step=0, tau=0.0)  # any verdict at all would trigger a rollback
    returned: list[int] = []
    guard = make_guard(failing_critic(kind, release, returned), mode="on", policy=policy, critic_timeout_s=0.05)
    out = build_agent(model, [CriticGuardMiddleware(guard)], InMemorySaver()).invoke(task_input(), thread())
    assert returned == []  # no step waited for a hung critic to return
    assert comparable(out["messages"]) == comparable(plain["messages"])
    records = steps_of(guard)
    assert len(records) == 5
    assert all(r.critic_error and r.action is NONE and r.reason == "critic_error" for r in records)


@pytest.mark.parametrize("kind", FAILURES)
async def test_a_failing_critic_never_breaks_or_stalls_the_run_async(
    kind: str, release: threading.Event, make_guard: GuardFactory
) -> None:
    model, _ = calc_model(bad_step=2)
    returned: list[int] = []
    guard = make_guard(
        failing_critic(kind, release, returned), mode="on", policy=Policy(min_step=0, tau=0.0), critic_timeout_s=0.05
    )
    out = await build_agent(model, [CriticGuardMiddleware(guard)]).ainvoke(task_input(), thread())
    assert returned == []  # no step waited for a hung critic to return
    assert final_answer(out["messages"]) == wrong_answer(2)
    assert all(r.reason == "critic_error" for r in steps_of(guard))


@pytest.mark.parametrize("how", ["swallow", "block"])
async def test_an_async_critic_ignoring_its_deadline_never_holds_the_run_nor_acts_late(
    how: str, release: threading.Event, make_guard: GuardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    model, _ = calc_model(bad_step=2)
    critic = StubbornCritic(how, release)
    guard = make_guard(critic, mode="on", policy=Policy(min_step=0), critic_timeout_s=0.05)
    out = await build_agent(model, [CriticGuardMiddleware(guard)], InMemorySaver()).ainvoke(task_input(), thread())
    assert critic.finished == 0  # the run returned while the critic was still busy
    assert final_answer(out["messages"]) == wrong_answer(2)  # no rollback: every step went on at its deadline
    assert notes(out["messages"]) == []
    assert [(r.action, r.critic_error) for r in steps_of(guard)] == [(NONE, "timeout after 0.05s")] * 5
    if how == "block":
        await asyncio.sleep(0.3)  # the critic's loop stays blocked past the lag threshold (0.25 s)
    release.set()
    started = critic.started
    # swallow: each call ran (one the loop thread could not start within its 50 ms would never start, so "up to");
    # block: the calls queued behind the blocked loop never started
    assert 1 <= started <= 5 if how == "swallow" else started == 1
    deadline = time.monotonic() + 10
    while guard.counters.late_verdicts < started and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert (guard.counters.late_verdicts, guard.counters.total_interventions) == (started, 0)
    assert [(r.action, r.critic_error) for r in steps_of(guard)] == [(NONE, "timeout after 0.05s")] * 5
    blocked = [r for r in caplog.records if "blocked its event loop" in r.getMessage()]
    assert len(blocked) == (1 if how == "block" else 0)


async def test_a_poison_verdict_is_a_recorded_critic_error_and_concurrent_runs_keep_their_rows(
    make_guard: GuardFactory,
) -> None:
    """Four concurrent runs; the critic's first flag comes with a dict as rationale. That step is a critic error (no
    AttributeError building the feedback, no rollback), and every run's rows are in the store."""
    poisoned: list[str] = []

    async def critic(ctx: StepContext) -> Any:
        verdict = oracle_critic(ctx)
        if verdict.p_fail > 0.5 and not poisoned:
            poisoned.append(ctx.run_id)
            return {"p_fail": verdict.p_fail, "rationale": {"tool": "multiply", "why": "wrong operand"}}
        return verdict

    guard = make_guard(critic, mode="on")

    async def one(name: str) -> str:
        model, _ = calc_model(bad_step=2)
        agent = build_agent(model, [CriticGuardMiddleware(guard)], InMemorySaver())
        return final_answer((await agent.ainvoke(task_input(), thread(name)))["messages"])

    answers = await asyncio.gather(*map(one, ["t1", "t2", "t3", "t4"]))
    assert sorted(answers) == sorted([RIGHT] * 3 + [wrong_answer(2)])  # only the poisoned run was not rolled back
    rows = await asyncio.to_thread(rows_of, guard)
    assert len(rows) == 4
    assert sorted(len(steps) for steps in rows.values()) == [5, 6, 6, 6]  # every step of every run, retries too
    [bad] = [s for s in rows[poisoned[0]] if s.critic_error]
    assert (bad.step, bad.action, bad.reason) == (2, NONE, "critic_error")
    assert bad.critic_error == "MalformedVerdictError: Verdict.rationale must be a str or None, got dict"
    counters = guard.counters
    assert (counters.critic_errors, counters.total_interventions, counters.lost_steps) == (1, 3, 0)


# -- runs, arms, interrupts ---------------------------------------------------------------------------------------


def test_each_invocation_is_a_run_with_fresh_counters(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", capture_content=True)  # the store keeps each run's input
    agent = build_agent(model, [CriticGuardMiddleware(guard)], InMemorySaver())
    agent.invoke(task_input(), thread())
    out = agent.invoke(task_input("And now say it again.", msg_id="again"), thread())
    assert final_answer(out["messages"]) == RIGHT
    assert guard.store is not None
    runs = sorted(guard.store.runs(), key=lambda r: r.started_at)
    assert [r.task for r in runs] == [{"input": TASK}, {"input": "And now say it again."}]
    assert [r.status for r in runs] == ["completed", "completed"]
    assert [(s.step, s.attempt) for s in guard.store.steps_of(runs[1].run_id)] == [(0, 0)]


def test_runtime_context_is_part_of_the_task(make_guard: GuardFactory) -> None:
    model, _ = calc_model()
    guard = make_guard(oracle_critic, mode="observe", capture_content=True)  # off: tests/test_at_rest.py
    agent = build_agent(model, [CriticGuardMiddleware(guard)])
    agent.invoke(task_input(), thread(), context={"task_id": "calc-7", "difficulty": 2})
    assert guard.store is not None
    [run] = guard.store.runs()
    assert run.task == {"input": TASK, "task_id": "calc-7", "difficulty": 2}
    assert run.task_id == "calc-7"


@dataclass
class LiveContext:
    task_id: str
    connection: threading.Lock  # a live object: cannot be deep-copied


def test_a_dataclass_context_with_live_objects_is_read_not_copied(make_guard: GuardFactory) -> None:
    model, _ = calc_model()
    guard = make_guard(oracle_critic, mode="observe", capture_content=True)
    agent = create_agent(model, TOOLS, middleware=[CriticGuardMiddleware(guard)], context_schema=LiveContext)
    lock = threading.Lock()
    out = agent.invoke(task_input(), thread(), context=LiveContext("calc-8", lock))
    assert out["messages"][-1].text == RIGHT
    assert guard.store is not None
    [run] = guard.store.runs()
    assert run.task_id == "calc-8" and run.task is not None and run.task["connection"] == str(lock)


@pytest.mark.parametrize(
    ("mode", "arm", "expected"),
    [
        ("on", None, Arm.TREATMENT),
        ("observe", None, Arm.CONTROL),
        ("pilot", None, Arm.CONTROL),
        ("pilot", Arm.TREATMENT, Arm.TREATMENT),
    ],
)
def test_the_arm_of_a_run(mode: str, arm: Arm | None, expected: Arm, make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    # design="full": the paper's two independent runs per task, so a pilot run here needs no shadow fork
    guard = make_guard(oracle_critic, mode=mode, design="full")
    out = build_agent(model, [CriticGuardMiddleware(guard, arm=arm, outcomes="external")]).invoke(
        task_input(), thread()
    )
    assert guard.store is not None
    [run] = guard.store.runs()
    assert run.arm is expected
    assert final_answer(out["messages"]) == (RIGHT if guard.acts(expected) else wrong_answer(2))


def test_an_interrupt_under_the_guard_reaches_langgraph_and_resumes(make_guard: GuardFactory) -> None:
    model, _ = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on")
    review = guard.review
    answers: list[str] = []

    def review_with_a_human(ctx: StepContext, **kwargs: Any) -> Any:
        if ctx.step == 2 and not answers:  # the first time step 2 is judged (not its retry)
            answers.append(interrupt({"step": ctx.step}))
        return review(ctx, **kwargs)

    guard.review = review_with_a_human  # type: ignore[method-assign]
    agent = build_agent(model, [CriticGuardMiddleware(guard)], InMemorySaver())
    paused = agent.invoke(task_input(), thread())
    assert [i.value for i in paused["__interrupt__"]] == [{"step": 2}]
    out = agent.invoke(Command(resume="go on"), thread())
    assert answers == ["go on"]
    assert final_answer(out["messages"]) == RIGHT
    assert (2, 0, ROLLBACK, "flag") in summary(guard)
    assert guard.wait_for_writes(10)
    assert [r.status for r in guard.store.runs()] == ["completed"]  # resumed, one run: not taken for an unended one


def test_the_guard_adds_no_node_per_step(make_guard: GuardFactory) -> None:
    # Judging happens inside the model node (an extra node per step costs LangGraph a superstep): the guard's only
    # nodes run once per invocation, to start and end the run.
    for policy in (Policy(action="rollback"), Policy(action="append")):
        middleware = CriticGuardMiddleware(make_guard(oracle_critic, mode="on", policy=policy))
        agent = create_agent(calc_model()[0], TOOLS, middleware=[middleware])
        guard_nodes = {n for n in agent.get_graph().nodes if n.startswith("CriticGuardMiddleware")}
        assert guard_nodes == {"CriticGuardMiddleware.before_agent", "CriticGuardMiddleware.after_agent"}
        assert type(middleware).wrap_model_call is not AgentMiddleware.wrap_model_call
        assert type(middleware).awrap_model_call is not AgentMiddleware.awrap_model_call


class Answer(BaseModel):
    value: int


def answers_after_a_note(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
    return tool_call("Answer", value=42 if any(is_guard_note(m) for m in messages) else 41)


def test_rollback_withdraws_a_structured_answer_with_its_tool_message(make_guard: GuardFactory) -> None:
    # With ToolStrategy the model node answers with the structured-output call and its tool message: a rollback
    # must withdraw both, and the structured response must be the retry's.
    def flags_41(ctx: StepContext) -> float:
        calls = ctx.proposed.get("tool_calls") or []
        return 0.9 if calls and calls[0]["arguments"] == {"value": 41} else 0.1

    guard = make_guard(flags_41, mode="on", policy=Policy(min_step=0))
    agent = create_agent(
        ScriptedChatModel(policy=answers_after_a_note),
        [],
        middleware=[CriticGuardMiddleware(guard)],
        response_format=ToolStrategy(Answer),
    )
    out = agent.invoke(task_input())
    assert out["structured_response"] == Answer(value=42)
    messages = out["messages"]
    assert [type(m).__name__ for m in messages] == ["HumanMessage", "HumanMessage", "AIMessage", "ToolMessage"]
    assert is_guard_note(messages[1]) and messages[2].tool_calls[0]["args"] == {"value": 42}
    assert summary(guard) == [(0, 0, ROLLBACK, "flag"), (0, 1, NONE, "below_tau")]
