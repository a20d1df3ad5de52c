"""The guarded agent in real environments (benchmarks/envs/agent.py, scripted.py, pilot.py), end to end.

Real ``create_agent`` graphs, the real ``CriticGuardMiddleware`` in pilot mode, a SQLite checkpointer and a SQLite
store: shadow branches act on forked environments, never on the production one, and every pair completes with the
environment's own judge.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import in_ci

try:
    import bfcl_eval  # noqa: F401
    import textworld  # noqa: F401
except ImportError:
    if in_ci():
        raise
    pytest.skip("textworld / bfcl-eval are not installed: run `make bench-envs`", allow_module_level=True)

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from benchmarks.envs.agent import OUTCOME, EnvContext, build_env_agent
from benchmarks.envs.base import Environment, ToolCall
from benchmarks.envs.bfcl_env import BfclEnv
from benchmarks.envs.pilot import Task, run_pilot
from benchmarks.envs.scripted import OracleAgent, OracleCritic
from benchmarks.envs.textworld_env import TextWorldEnv, make_game
from critic_guard.guard import CriticGuard
from critic_guard.store.base import PairRecord, PairStatus
from critic_guard.types import Arm, StepContext
from critic_guard_langgraph.messages import make_note
from critic_guard_langgraph.runner import ForkPoint, shadow_thread_id
from critic_guard_langgraph.shadow import ShadowBranch
from critic_guard_langgraph.testing import ScriptedChatModel

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "textworld"
AGENT = OracleAgent(mistake_rate=0.25)
CRITIC = OracleCritic(auroc=0.95, center=1.0)


@pytest.fixture
def saver(tmp_path: Path) -> Iterator[SqliteSaver]:
    connection = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    yield SqliteSaver(connection)
    connection.close()


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[CriticGuard]:
    guard = CriticGuard(CRITIC, mode="pilot", critic_timeout_s=None, store=f"sqlite:///{tmp_path / 'guard.db'}")
    yield guard
    guard.close()


def tool_messages(messages: list[BaseMessage]) -> int:
    return sum(isinstance(message, ToolMessage) for message in messages)


def run_task(env: Environment, seed: int, guard: CriticGuard, saver: SqliteSaver) -> tuple[EnvContext, Any]:
    """One production run of the pilot; waits for its shadow branch. Returns the context and the graph."""
    context = EnvContext(env, seed=seed, max_steps=30)
    agent, middleware = build_env_agent(ScriptedChatModel(policy=AGENT), env.tools, guard, saver)
    config = {"configurable": {"thread_id": env.task_id}, "recursion_limit": 400}
    agent.invoke({"messages": [HumanMessage(env.instruction)]}, config, context=context)
    middleware.close()  # waits for the shadow branch; the guard (not the middleware's) stays open
    return context, agent


def check_forked_pair(context: EnvContext, agent: Any, pair: PairRecord) -> EnvContext:
    """The branch acted on its own env from the fork point on; production's env saw production's steps only."""
    production = agent.get_state({"configurable": {"thread_id": context.env.task_id}}).values
    assert context.steps == tool_messages(production["messages"])  # production stepped only by production
    at_fork = agent.get_state(
        {"configurable": {"thread_id": context.env.task_id, "checkpoint_id": pair.fork_checkpoint_id}}
    ).values["messages"]
    assert not isinstance(at_fork[-1], AIMessage)  # the flagged step's input: the proposal is not in it yet
    branch_run = pair.treatment_run_id
    fork_point = ForkPoint(context.env.task_id, pair.fork_checkpoint_id or "", "")
    thread = shadow_thread_id(fork_point, ShadowBranch(pair.pair_id, branch_run, Arm.TREATMENT, pair.fork_step or 0))
    branch = agent.get_state({"configurable": {"thread_id": thread}}).values
    [branch_context] = context.branches
    assert branch_context.env is not context.env
    assert branch_context.steps == tool_messages(branch["messages"]) - tool_messages(at_fork)
    assert branch_context.model_calls >= 1
    assert (pair.control_success, pair.treatment_success) == (production[OUTCOME], branch[OUTCOME])
    assert pair.control_success == context.env.success()
    assert pair.treatment_success == branch_context.env.success()
    return branch_context


@pytest.mark.slow
def test_textworld_branches_play_forked_games(guard: CriticGuard, saver: SqliteSaver) -> None:
    forked = 0
    for seed in (1, 2, 3):
        env = TextWorldEnv(make_game("tw-cooking", seed, CACHE))
        context, agent = run_task(env, seed, guard, saver)
        try:
            [pair] = [p for p in guard.pairs() if p.task_id == env.task_id]
            assert pair.status is PairStatus.COMPLETE
            if not pair.flagged:
                assert context.branches == [] and pair.control_success == pair.treatment_success == env.success()
                continue
            forked += 1
            branch = check_forked_pair(context, agent, pair)
            assert isinstance(branch.env, TextWorldEnv)
            # the branch replayed production's moves up to the fork, then went its own way
            prefix = len(branch.env.commands) - branch.steps
            assert branch.env.commands[:prefix] == env.commands[:prefix]
        finally:
            context.close()
    assert forked >= 1


def test_bfcl_branches_play_the_remaining_turns_on_forked_apis(guard: CriticGuard, saver: SqliteSaver) -> None:
    forked = 0
    for index in (0, 1, 2, 3):
        env = BfclEnv.from_id(f"multi_turn_base_{index}")
        context, agent = run_task(env, index, guard, saver)
        try:
            [pair] = [p for p in guard.pairs() if p.task_id == env.task_id]
            assert pair.status is PairStatus.COMPLETE
            assert env.done  # production played every turn
            if not pair.flagged:
                continue
            forked += 1
            branch = check_forked_pair(context, agent, pair)
            assert isinstance(branch.env, BfclEnv) and branch.env.done  # the branch played the remaining turns too
            fork_calls = sum(map(len, branch.env.calls)) - branch.steps
            assert [c for turn in branch.env.calls for c in turn][:fork_calls] == [
                c for turn in env.calls for c in turn
            ][:fork_calls]
        finally:
            context.close()
    assert forked >= 1


def test_step_budget_ends_the_run_with_the_judges_outcome(tmp_path: Path) -> None:
    hopeless = OracleAgent(mistake_rate=1.0)  # never follows the plan
    task = Task("tw", lambda: TextWorldEnv(make_game("tw-cooking", 1, CACHE)), seed=7, max_steps=4)
    result = run_pilot([task], "fork", tmp_path, agent=hopeless, critic=OracleCritic())
    [pair] = result.pairs
    assert pair.status is PairStatus.COMPLETE and pair.control_success is False
    assert result.env_steps[0] >= 4  # production used its budget (a branch, if any, adds its own steps)


@pytest.mark.slow
def test_a_fork_branch_is_the_treatment_run_that_shares_productions_prefix(tmp_path: Path) -> None:
    # Deterministic agent and critic: a full treatment run with the production run's seed replays the shared prefix
    # step for step, so each fork pair must equal the full pair, outcome for outcome, at a fraction of the calls.
    tasks = [Task(f"b{i}", lambda i=i: BfclEnv.from_id(f"multi_turn_base_{i}"), seed=i, max_steps=20) for i in range(6)]
    fork = run_pilot(tasks, "fork", tmp_path / "fork", agent=AGENT, critic=CRITIC)
    replay = run_pilot(tasks, "full", tmp_path / "replay", agent=AGENT, critic=CRITIC, independent_rerun=False)
    rerun = run_pilot(tasks, "full", tmp_path / "rerun", agent=AGENT, critic=CRITIC)
    assert [p.status for p in fork.pairs + replay.pairs + rerun.pairs] == [PairStatus.COMPLETE] * 18
    assert fork.flagged >= 2 and fork.counts.discordant >= 1
    outcomes = [[(p.control_success, p.treatment_success) for p in result.pairs] for result in (fork, replay)]
    assert outcomes[0] == outcomes[1]
    assert [p.control_success for p in rerun.pairs] == [p.control_success for p in fork.pairs]
    assert all(not p.single_run for p in replay.pairs + rerun.pairs)
    assert replay.calls_per_task > fork.calls_per_task  # a second full run per task costs more than a suffix


def test_agent_draws_depend_on_input_and_seed_and_a_rollback_retry_avoids_the_withdrawn_step() -> None:
    env = TextWorldEnv(make_game("tw-cooking", 1, CACHE))
    try:
        history: list[BaseMessage] = [HumanMessage(env.instruction)]
        agent = OracleAgent(mistake_rate=0.5, comply=1.0)
        draws = [agent.action(env, history, seed) for seed in range(20)]
        distinct = {None if draw is None else draw.args["text"] for draw in draws}
        assert env.oracle_next() in draws and len(distinct) > 2  # the seed matters: right and wrong moves
        assert agent.action(env, history, 3) == agent.action(env, list(history), 3)  # a pure function
        note = make_note("withdrawn", "k")
        oracle = env.oracle_next()
        retries = [(agent.action(env, history, seed), agent.action(env, [*history, note], seed)) for seed in range(20)]
        assert all(retry != withdrawn for withdrawn, retry in retries)  # told to, it always changes its step
        assert all(retry != oracle for withdrawn, retry in retries if withdrawn == oracle)  # disruption
        assert any(retry == oracle for withdrawn, retry in retries if withdrawn != oracle)  # recovery
    finally:
        env.close()


def test_bfcl_mistakes_are_plausible_calls() -> None:
    env = BfclEnv.from_id("multi_turn_base_0")
    agent = OracleAgent(mistake_rate=1.0)
    oracle = env.oracle_next()
    assert oracle is not None
    wrong = [agent.action(env, [HumanMessage(env.instruction)], seed) for seed in range(30)]
    assert oracle not in wrong
    names = {tool.name for tool in env.tools}
    assert all(isinstance(call, ToolCall) and call.name in names for call in wrong)
    assert any(call.name == oracle.name for call in wrong)  # a perturbed argument
    assert any(call.name != oracle.name for call in wrong)  # another tool


def test_critic_noise_has_the_auroc_and_flag_rates_it_claims() -> None:
    critic = OracleCritic()  # AUROC 0.9, center 1.5: flags 4 % of right steps and 52 % of wrong ones at tau 0.6
    contexts = [StepContext("r", 2, ({"role": "user", "content": f"task {i}"},), {"seed": 1}) for i in range(4000)]
    right = [critic.judge(ctx, wrong=False).p_fail for ctx in contexts]
    wrong = [critic.judge(ctx, wrong=True).p_fail for ctx in contexts]
    flagged = [sum(p >= 0.6 for p in scores) / len(scores) for scores in (right, wrong)]
    assert flagged[0] == pytest.approx(0.04, abs=0.015) and flagged[1] == pytest.approx(0.52, abs=0.04)
    pairs = sorted(right)
    auroc = sum(bisect.bisect_left(pairs, p) for p in wrong) / len(right) / len(wrong)
    assert auroc == pytest.approx(0.9, abs=0.02)
    assert critic.judge(contexts[0], wrong=False) == critic.judge(contexts[0], wrong=False)  # no hidden state


def test_a_fork_that_fails_excludes_the_pair_and_spares_production(guard: CriticGuard, saver: SqliteSaver) -> None:
    def broken_fork(context: EnvContext) -> EnvContext:
        raise RuntimeError("no copy of this world")

    env = BfclEnv.from_id("multi_turn_base_0")
    context = EnvContext(env, seed=0, max_steps=30)
    agent, middleware = build_env_agent(
        ScriptedChatModel(policy=AGENT), env.tools, guard, saver, fork_context=broken_fork
    )
    final = agent.invoke(
        {"messages": [HumanMessage(env.instruction)]}, {"configurable": {"thread_id": "t"}}, context=context
    )
    middleware.close()  # waits for the shadow branch; the guard (not the middleware's) stays open
    [pair] = guard.pairs()
    assert pair.flagged and pair.status is PairStatus.INCOMPLETE
    assert pair.reason == "branch failed: RuntimeError"  # content capture off: the error type, not its text
    assert env.done and final[OUTCOME] == env.success()  # production ran to the end on its own env
    assert guard.lifecycle().incomplete == 1
