"""ChatModelCritic with a scripted judge model: prompt, structured verdicts, failures, and use inside a guard."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from calc_agent import RIGHT, TASK, GuardFactory, build_agent, calc_model, final_answer, task_input, thread
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from critic_guard.critics import MalformedVerdictError, as_critic
from critic_guard.policy import Policy
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import ChatModelCritic, CriticGuardMiddleware
from critic_guard_langgraph.critic import DEFAULT_PROMPT, render_trajectory
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

CTX = StepContext(
    run_id="r1",
    step=1,
    messages=(
        {"role": "user", "content": "What is 2+3, doubled?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}}],
        },
        {"role": "tool", "content": "5", "tool_call_id": "c1", "name": "add"},
        {"role": "assistant", "content": "The answer is 5."},
    ),
    task={"input": "What is 2+3, doubled?", "task_id": "t-9"},
)


def judge_model(p_fail: float | str = 0.8, rationale: str = "it forgot to double") -> ScriptedChatModel:
    def judge(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
        return tool_call("CriticOutput", p_fail=p_fail, rationale=rationale)

    return ScriptedChatModel(policy=judge, model_name="judge-1")


def test_the_judge_sees_the_task_the_trajectory_and_the_proposed_step() -> None:
    critic = ChatModelCritic(judge_model())
    system, human = critic.messages(CTX)
    assert isinstance(system, SystemMessage) and system.text == DEFAULT_PROMPT
    assert isinstance(human, HumanMessage)
    assert human.text == render_trajectory(CTX)
    assert human.text == (
        "# Task\n"
        "What is 2+3, doubled?\n"
        '(task metadata: {"task_id": "t-9"})\n'
        "\n"
        "# Trajectory so far (oldest first)\n"
        "[1] USER: What is 2+3, doubled?\n"
        "[2] ASSISTANT: \n"
        '    -> calls tool add({"a": 2, "b": 3}) [call c1]\n'
        "[3] TOOL RESULT (add, call c1): 5\n"
        "\n"
        "# Proposed next step (step 1, not executed yet)\n"
        "ASSISTANT: The answer is 5."
    )


def test_long_messages_are_cut_in_the_middle() -> None:
    long = StepContext("r", 0, ({"role": "user", "content": "x" * 500 + "END"}, {"role": "assistant", "content": "ok"}))
    cut = "x" * 40 + " [...423 chars cut...] " + "x" * 37 + "END"  # 40 + 40 of the 503 characters are kept
    assert render_trajectory(long, max_chars=100).splitlines()[1:5] == [
        cut,
        "",
        "# Trajectory so far (oldest first)",
        f"[1] USER: {cut}",
    ]


async def test_structured_verdict_sync_and_async() -> None:
    critic = ChatModelCritic(judge_model(0.8))
    assert critic.judge(CTX) == Verdict(0.8, rationale="it forgot to double")
    assert await critic.ajudge(CTX) == Verdict(0.8, rationale="it forgot to double")
    assert as_critic(critic) is critic


def test_name_identifies_model_and_prompt() -> None:
    default = ChatModelCritic(judge_model())
    assert default.name.startswith("chat-model:judge-1:")
    assert ChatModelCritic(judge_model(), prompt="Be strict.").name != default.name
    assert ChatModelCritic(judge_model(), name="judge@v3").name == "judge@v3"


@pytest.mark.parametrize("p_fail", [1.5, -0.1, "high"])
def test_out_of_range_or_non_numeric_probabilities_raise(p_fail: float | str) -> None:
    with pytest.raises(ValueError):
        ChatModelCritic(judge_model(p_fail)).judge(CTX)


def test_an_answer_without_a_structured_verdict_raises() -> None:
    chatty = ScriptedChatModel(policy=lambda messages, rng: "I think it will fail.")
    with pytest.raises(MalformedVerdictError, match="no structured verdict"):
        ChatModelCritic(chatty).judge(CTX)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="BaseChatModel"):
        ChatModelCritic("gpt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        ChatModelCritic(judge_model(), prompt="  ")
    with pytest.raises(ValueError, match="max_chars"):
        ChatModelCritic(judge_model(), max_chars=10)


def plan_checking_judge(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
    """A judge that reads the rendered transcript and flags the wrong operand of the calculator's step 2."""
    proposed = messages[-1].text.split("# Proposed next step")[1]
    wrong = '"a": 20, "b": 2' in proposed
    return tool_call("CriticOutput", p_fail=0.95 if wrong else 0.05, rationale="step 2 should add 1")


@pytest.mark.parametrize("use_async", [False, True])
async def test_as_the_critic_of_a_guarded_agent(use_async: bool, make_guard: GuardFactory) -> None:
    critic = ChatModelCritic(ScriptedChatModel(policy=plan_checking_judge))
    guard = make_guard(critic, mode="on", policy=Policy(action="rollback"), capture_content=True)  # keep the input
    model, calls = calc_model(bad_step=2)
    agent = build_agent(model, [CriticGuardMiddleware(guard)])
    # (the sync API from a worker thread, as a service calls it: never on the event loop)
    out = (
        await agent.ainvoke(task_input(), thread())
        if use_async
        else await asyncio.to_thread(agent.invoke, task_input(), thread())
    )
    assert final_answer(out["messages"]) == RIGHT
    assert "step 2 should add 1" in calls[3][-1].text  # the judge's rationale reached the retry
    store = guard.store
    assert store is not None
    [run] = await asyncio.to_thread(store.runs)
    steps = await asyncio.to_thread(store.steps_of, run.run_id)
    assert [s.p_fail for s in steps] == [0.05, 0.05, 0.95, 0.05, 0.05, 0.05]
    assert steps[2].rationale == "step 2 should add 1"
    assert run.task == {"input": TASK}


def test_a_broken_judge_fails_open(make_guard: GuardFactory) -> None:
    critic = ChatModelCritic(ScriptedChatModel(policy=lambda messages, rng: "no tool call"))
    guard = make_guard(critic, mode="on", policy=Policy(min_step=0, tau=0.0))
    model, _ = calc_model(bad_step=2)
    out = build_agent(model, [CriticGuardMiddleware(guard)]).invoke(task_input(), thread())
    assert final_answer(out["messages"]) == "44"
    assert guard.counters.critic_errors == 5


async def test_the_judge_runs_on_the_callers_loop_where_its_async_client_lives(make_guard: GuardFactory) -> None:
    """A chat model's async HTTP client cannot serve two loops (langchain-openai shares one per base URL with the
    agent's model), so the judge is not moved to the guard's loop."""
    loops: list[asyncio.AbstractEventLoop] = []

    def judge(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
        loops.append(asyncio.get_running_loop())
        return tool_call("CriticOutput", p_fail=0.7, rationale="fine")

    critic = ChatModelCritic(ScriptedChatModel(policy=judge, model_name="judge-1"))
    guard = make_guard(critic, mode="on")
    review = await guard.areview(CTX)
    assert review.verdict == Verdict(0.7, rationale="fine")
    assert loops == [asyncio.get_running_loop()]
