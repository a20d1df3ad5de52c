"""The guard beside LangChain's model-call middlewares (integrations/langgraph/README.md, "With LangChain's other
middlewares"): what a call limit counts, in either list order, and where retries and fallbacks go.

The calculator agent of ``calc_agent`` with ``bad_step=2``: the oracle critic flags step 2. With a silent rollback
the deterministic model proposes the same wrong step again, so only the guard's budget (``max_interventions``) ends
the step: every rollback is one more model call.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from calc_agent import (
    RIGHT,
    GuardFactory,
    build_agent,
    calc_model,
    final_answer,
    oracle_critic,
    task_input,
    thread,
    wrong_answer,
)
from langchain.agents.middleware import ModelCallLimitMiddleware, ModelFallbackMiddleware, ModelRetryMiddleware
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.types import Action
from critic_guard_langgraph import CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel

NONE, ROLLBACK = Action.NONE, Action.ROLLBACK


def attempts(guard: CriticGuard) -> list[tuple[int, int, Action]]:
    assert guard.store is not None
    [run] = guard.store.runs(guard.guard_key)
    return [(s.step, s.attempt, s.action) for s in guard.store.steps_of(run.run_id)]


@pytest.mark.parametrize("max_interventions", [0, 2, 10])
@pytest.mark.parametrize("limit_first", [True, False], ids=["limit-then-guard", "guard-then-limit"])
def test_a_call_limit_counts_model_steps_and_the_budget_bounds_the_retries(
    limit_first: bool, max_interventions: int, make_guard: GuardFactory
) -> None:
    model, calls = calc_model(bad_step=2)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(feedback=False, max_interventions=max_interventions))
    limit = ModelCallLimitMiddleware(run_limit=3)  # exit_behavior="end"
    guarded = CriticGuardMiddleware(guard)
    agent = build_agent(model, [limit, guarded] if limit_first else [guarded, limit], InMemorySaver())
    out = agent.invoke(task_input(), thread())
    # three model steps (0, 1, 2) passed the limit; the fourth was stopped by it, in either order
    assert out["messages"][-1].text == "Model call limits exceeded: run limit (3/3)"
    assert agent.get_state(thread()).values["thread_model_call_count"] == 3
    # model calls: the three steps, plus one retry per rollback of step 2, bounded by the guard's budget
    assert len(calls) == 3 + max_interventions
    rollbacks = [(2, k, ROLLBACK) for k in range(max_interventions)]
    assert attempts(guard) == [(0, 0, NONE), (1, 0, NONE), *rollbacks, (2, max_interventions, NONE)]


def flaky_after_a_note(inner: ScriptedChatModel) -> tuple[ScriptedChatModel, list[int]]:
    """The calculator model, failing once: the first time it is asked again after a guard note (the retry)."""
    failures: list[int] = []

    def policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        if any(is_guard_note(m) for m in messages) and not failures:
            failures.append(len(messages))
            raise ConnectionError("the provider hung up")
        return inner.policy(messages, rng)

    return ScriptedChatModel(policy=policy), failures


@pytest.mark.parametrize("guard_first", [True, False], ids=["guard-then-retry", "retry-then-guard"])
def test_model_retries_belong_inside_the_guard(guard_first: bool, make_guard: GuardFactory) -> None:
    inner, calls = calc_model(bad_step=2)
    model, failures = flaky_after_a_note(inner)
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="rollback"))
    retry = ModelRetryMiddleware(max_retries=2, initial_delay=0.0, jitter=False)
    guarded = CriticGuardMiddleware(guard)
    agent = build_agent(model, [guarded, retry] if guard_first else [retry, guarded], InMemorySaver())
    out = agent.invoke(task_input(), thread())
    assert final_answer(out["messages"]) == RIGHT and len(failures) == 1
    steps = [(0, 0, NONE), (1, 0, NONE), (2, 0, ROLLBACK)]
    if guard_first:  # the retry middleware repeats the failed call: the guard sees one proposal per call
        assert len(calls) == 6
        assert attempts(guard) == [*steps, (2, 1, NONE), (3, 0, NONE), (4, 0, NONE)]
    else:  # the retry middleware repeats the guard's whole step: the withdrawn proposal is asked and judged again
        assert len(calls) == 7
        assert attempts(guard) == [*steps, (2, 1, ROLLBACK), (2, 2, NONE), (3, 0, NONE), (4, 0, NONE)]


def test_a_fallback_inside_the_guard_is_judged_like_the_primary(make_guard: GuardFactory) -> None:
    primary, failures = flaky_after_a_note(calc_model(bad_step=2)[0])
    fallback, fallback_calls = calc_model()
    guard = make_guard(oracle_critic, mode="on", policy=Policy(action="rollback"))
    agent = build_agent(primary, [CriticGuardMiddleware(guard), ModelFallbackMiddleware(fallback)], InMemorySaver())
    out = agent.invoke(task_input(), thread())
    # the primary failed on the retry of step 2; the fallback answered it, and the guard judged that answer
    assert final_answer(out["messages"]) == RIGHT != wrong_answer(2)
    assert len(failures) == 1 and len(fallback_calls) == 1 and is_guard_note(fallback_calls[0][-1])
    assert attempts(guard) == [(0, 0, NONE), (1, 0, NONE), (2, 0, ROLLBACK), (2, 1, NONE), (3, 0, NONE), (4, 0, NONE)]
