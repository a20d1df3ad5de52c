"""The simulator: a pure model, knobs that do what they say, and graph runs that agree with the exact ground truth.

The statistical tests are binomial tests at level 1e-3 of counts from the real guarded agent (create_agent graph,
checkpointer, shadow forks, SQLite store) against probabilities from :func:`sim_truth`, whose own Monte Carlo
error (< 1e-3 per cell at 300,000 tasks) is negligible at these sample sizes. A wrong retry rule, a critic that
flags at the wrong rate or a fork that does not share its prefix shifts these rates by far more than the tests
tolerate.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from calc_agent import GuardFactory
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from scipy import stats

from benchmarks.sim_truth import sim_truth
from critic_guard.store.base import PairStatus
from critic_guard.types import StepContext
from critic_guard_langgraph import READ_ONLY, CriticGuardMiddleware, to_neutral
from critic_guard_langgraph.messages import make_note
from critic_guard_langgraph.sim import (
    SCENARIOS,
    SimCounts,
    SimScenario,
    SimTask,
    record,
    sim_agent,
    sim_input,
    sim_judge,
    sim_model,
    sim_tasks,
)
from critic_guard_langgraph.sim_critic import SimCritic

LEVEL = 1e-3
TRUTH_N = 300_000  # Monte Carlo error < 1e-3 per cell: negligible against the binomial tests' n of 100-300
NULL = next(s for s in SCENARIOS if s.name == "null")


def agrees(successes: int, n: int, p: float) -> bool:
    return bool(stats.binomtest(successes, n, p).pvalue > LEVEL)


def first_messages(task: SimTask, attempt: int = 0) -> list[BaseMessage]:
    return list(sim_input(task, attempt)["messages"])


def test_prompts_round_trip_and_tasks_are_seeded() -> None:
    tasks = sim_tasks(5, seed=3, steps=4)
    assert tasks == sim_tasks(5, seed=3, steps=4) != sim_tasks(5, seed=4, steps=4)
    assert all(len(t.values) == 3 for t in tasks)
    assert SimTask.parse(tasks[2].prompt(attempt=7)) == (tasks[2], 7)
    assert SimTask.parse("Compute 2 + 2") is None


def test_the_model_is_a_pure_function_of_its_input() -> None:
    model = sim_model(NULL)
    tasks = sim_tasks(40, seed=1)
    first = [model.reply(first_messages(t)) for t in tasks]
    assert [model.reply(first_messages(t)) for t in tasks] == first
    # another attempt of the same task is another sample: some first steps differ
    again = [model.reply(first_messages(t, attempt=1)) for t in tasks]
    assert any(a.tool_calls[0]["args"] != b.tool_calls[0]["args"] for a, b in zip(first, again, strict=True))
    assert sim_model(dataclasses.replace(NULL, seed=1)).reply(first_messages(tasks[0])).id != first[0].id


def _retry(scenario: SimScenario, task: SimTask, proposal_mistake: bool) -> bool | None:
    """The retry's mistake flag after a rollback of the first proposal, if that proposal had the given kind."""
    model = sim_model(scenario)
    history = first_messages(task)
    proposal = model.reply(history)
    if proposal.response_metadata["sim"]["mistake"] != proposal_mistake:
        return None
    retry = model.reply([*history, make_note("Your last step was rolled back.", "k1")])
    assert retry.response_metadata["sim"]["retry"] == 1
    return bool(retry.response_metadata["sim"]["mistake"])


@pytest.mark.parametrize(("recover", "disrupt"), [(1.0, 0.0), (0.0, 1.0)])
def test_a_retry_follows_the_r_and_d_knobs(recover: float, disrupt: float) -> None:
    scenario = SimScenario("knobs", step_error=0.5, critic_auroc=0.75, recover=recover, disrupt=disrupt)
    tasks = sim_tasks(60, seed=2)
    after_mistake = [_retry(scenario, t, True) for t in tasks]
    after_right = [_retry(scenario, t, False) for t in tasks]
    seen_mistake = [m for m in after_mistake if m is not None]
    seen_right = [m for m in after_right if m is not None]
    assert seen_mistake and seen_right
    assert all(m is (recover == 0.0) for m in seen_mistake)  # recovered iff recover == 1
    assert all(m is (disrupt == 1.0) for m in seen_right)  # disrupted iff disrupt == 1


def test_a_mistaken_step_changes_the_answer_and_the_judge_sees_it() -> None:
    perfect = SimScenario("perfect", step_error=0.0, critic_auroc=0.75, recover=0.5, disrupt=0.5)
    sloppy = dataclasses.replace(perfect, name="sloppy", step_error=1.0)
    task = sim_tasks(1, seed=5)[0]
    right = sim_agent(perfect).invoke(sim_input(task))
    wrong = sim_agent(sloppy).invoke(sim_input(task))
    assert sim_judge(None, right) and right["messages"][-1].text == str(task.answer)
    assert not sim_judge(None, wrong)
    assert sum(isinstance(m, ToolMessage) for m in wrong["messages"]) == len(task.values)
    assert not sim_judge(None, {"messages": []})


def _judged(critic: SimCritic, history: list[BaseMessage], proposal: AIMessage) -> float:
    ctx = StepContext(run_id="r", step=0, messages=tuple(to_neutral([*history, proposal])))
    return critic.judge(ctx).p_fail


def test_the_critic_has_the_scenario_auroc() -> None:
    scenario = SimScenario("auroc", step_error=0.5, critic_auroc=0.8, recover=0.5, disrupt=0.5)
    critic = SimCritic(scenario)
    model = sim_model(scenario)
    scores: dict[bool, list[float]] = {True: [], False: []}
    for task in sim_tasks(1500, seed=9):
        history = first_messages(task)
        proposal = model.reply(history)
        scores[proposal.response_metadata["sim"]["mistake"]].append(_judged(critic, history, proposal))
    u = stats.mannwhitneyu(scores[True], scores[False]).statistic
    auroc = u / (len(scores[True]) * len(scores[False]))
    # the AUROC estimate's standard error at these sizes is about 0.012; allow 4 of them
    assert abs(auroc - 0.8) < 0.05
    assert _judged(critic, first_messages(task), proposal) == scores[proposal.response_metadata["sim"]["mistake"]][-1]


def test_truth_matches_closed_forms() -> None:
    scenario = SimScenario.from_failure_rate("closed", 0.3, critic_auroc=0.75, recover=0.4, disrupt=0.2)
    fork, full = sim_truth(scenario, "fork", n=200_000), sim_truth(scenario, "full", n=200_000)
    se = math.sqrt(0.3 * 0.7 / 200_000)
    assert abs(fork.p - 0.3) < 5 * se and abs(full.p - 0.3) < 5 * se  # unguarded failure rate
    assert abs(fork.net - full.net) < 0.01  # the designs differ in noise, not in effect
    assert full.cells[1] + full.cells[2] > fork.cells[1] + fork.cells[2]  # independent reruns add discordance
    assert math.isclose(fork.p_star, fork.d / (fork.r + fork.d))
    never = dataclasses.replace(scenario, critic_shift=-20.0)  # a critic that never flags: nothing changes
    assert sim_truth(never, "fork", n=20_000).cells[1:3] == (0.0, 0.0)


def _unguarded_run_fails(model: Any, task: SimTask, attempt: int) -> bool:
    """One unguarded run without the graph: the model's replies and the tool results create_agent would add."""
    messages = first_messages(task, attempt)
    while True:
        reply = model.reply(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return not sim_judge(task, {"messages": messages})
        [call] = reply.tool_calls
        messages.append(ToolMessage(record.invoke(call["args"]), tool_call_id=call["id"], name="record"))


def test_task_spread_makes_reruns_of_a_task_correlate() -> None:
    scenario = next(s for s in SCENARIOS if s.name == "hotpotqa_harm_correlated")
    tasks = sim_tasks(300, seed=21)
    assert scenario.task_error(tasks[0].task_id) == scenario.task_error(tasks[0].task_id)
    assert len({scenario.task_error(t.task_id) for t in tasks[:5]}) == 5
    assert NULL.task_error(tasks[0].task_id) == NULL.step_error
    model = sim_model(scenario)
    runs = [(_unguarded_run_fails(model, t, 0), _unguarded_run_fails(model, t, 1)) for t in tasks]
    truth = sim_truth(scenario, "full", n=TRUTH_N)
    assert 0.4 < truth.icc < 0.6 and sim_truth(NULL, "full", n=TRUTH_N).icc == 0.0
    assert agrees(sum(a for a, _ in runs), len(runs), truth.p)
    # two attempts of one task fail together with probability E[f^2] = p^2 + icc p (1 - p)
    both = truth.p**2 + truth.icc * truth.p * (1 - truth.p)
    assert agrees(sum(a and b for a, b in runs), len(runs), both)


def _pilot(
    make_guard: GuardFactory, scenario: SimScenario, n: int
) -> tuple[Counter[tuple[bool, bool]], int, list[int]]:
    """Cells and flagged count of ``n`` fork-design pairs, and each task's model calls (production + branch)."""
    counts = SimCounts()
    guard = make_guard(SimCritic(scenario, counts), mode="pilot", policy=scenario.policy(), agent_name="sim")
    middleware = CriticGuardMiddleware(guard, judge=sim_judge, shadow_tools={"record": READ_ONLY})
    agent = sim_agent(scenario, [middleware], InMemorySaver(), counts)
    tasks = sim_tasks(n, seed=scenario.seed + 100, steps=scenario.steps)
    for task in tasks:
        agent.invoke(sim_input(task), {"configurable": {"thread_id": task.task_id}})
    assert middleware.wait(120)
    pairs = guard.pairs()
    assert len(pairs) == n and all(p.status is PairStatus.COMPLETE for p in pairs)
    cells = Counter((bool(p.control_success), bool(p.treatment_success)) for p in pairs)
    return cells, sum(p.flagged for p in pairs), [counts.model[t.task_id] for t in tasks]


@pytest.mark.slow
def test_fork_pilot_through_the_graph_agrees_with_the_truth(make_guard: GuardFactory) -> None:
    n = 200
    cells, flagged, calls = _pilot(make_guard, NULL, n)
    truth = sim_truth(NULL, "fork", n=TRUTH_N)
    assert agrees(flagged, n, truth.flag_rate)
    assert agrees(cells[False, False] + cells[False, True], n, truth.p)
    assert agrees(cells[False, True], n, truth.cells[1])
    assert agrees(cells[True, False], n, truth.cells[2])
    # model calls per task (production run + shadow branch): a z-test at about the same level (|z| < 3.3)
    mean, sd = float(np.mean(calls)), float(np.std(calls, ddof=1))
    assert abs(mean - (NULL.steps + truth.extra_model_calls)) < 3.3 * sd / math.sqrt(n)


def test_treatment_runs_through_the_graph_agree_with_the_truth(make_guard: GuardFactory) -> None:
    scenario = next(s for s in SCENARIOS if s.name == "alfworld_small_help")
    guard = make_guard(SimCritic(scenario), mode="on", policy=scenario.policy(), agent_name="sim")
    agent = sim_agent(scenario, [CriticGuardMiddleware(guard)])
    n = 120
    wins = sum(sim_judge(None, agent.invoke(sim_input(t, attempt=1))) for t in sim_tasks(n, seed=7))
    truth = sim_truth(scenario, "full", n=TRUTH_N)
    assert agrees(wins, n, truth.cells[1] + truth.cells[3])


def test_counts_are_per_task() -> None:
    counts = SimCounts()
    agent = sim_agent(NULL, counts=counts)
    tasks = sim_tasks(3, seed=11)
    for task in tasks:
        agent.invoke(sim_input(task))
    assert counts.model == Counter({t.task_id: NULL.steps for t in tasks})
    assert not counts.critic
