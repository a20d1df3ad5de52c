"""A guarded pilot over environment tasks: the ``fork`` design against the paper's ``full`` two-run design.

Why both: docs/pilot-design.md ("Why fork at the first flag") claims that forking at the critic's first flag removes
rerun noise from the discordant cells and costs about half the agent calls of two independent full runs per task. Both
designs here run the same tasks through the same guarded ``create_agent`` graph
(:func:`~benchmarks.envs.agent.build_env_agent`), with a SQLite store and a SQLite checkpointer in a scratch directory,
and count every model call.

* ``fork``: mode ``pilot``, production serves control; at the first flag the middleware forks a treatment branch
  on ``env.fork()``; an unflagged task is a concordant pair of one run.
* ``full``: two independent runs per task, control and treatment, each on a fresh environment and with its own
  draw of the agent's randomness (the seed is the task's, mixed with the arm), paired by the harness.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from benchmarks.envs.agent import EnvContext, build_env_agent, judge
from benchmarks.envs.base import Environment
from benchmarks.envs.scripted import OracleAgent, OracleCritic
from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.stats import PairedCounts
from critic_guard.store.base import PairKind, PairRecord, PairStatus
from critic_guard.types import Arm
from critic_guard_langgraph.testing import ScriptedChatModel

Design = Literal["fork", "full"]
DESIGNS: Final[tuple[Design, ...]] = ("fork", "full")
_OTHER_DRAW: Final = 1_000_003  # the full design's treatment run: another draw of the agent's randomness
_STEPS_PER_MOVE: Final = 6  # graph steps per agent move: before_model, model, after_model, tools, slack


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a pilot: how to open its environment, its seed, its step budget (tool calls)."""

    task_id: str
    open_env: Callable[[], Environment]
    seed: int
    max_steps: int


@dataclass(frozen=True, slots=True)
class PilotResult:
    """What one design's pilot produced: its pairs, the agent's model calls per task, the wall time."""

    design: Design
    pairs: tuple[PairRecord, ...]
    model_calls: tuple[int, ...]
    env_steps: tuple[int, ...]
    seconds: float

    @property
    def complete(self) -> tuple[PairRecord, ...]:
        return tuple(pair for pair in self.pairs if pair.status is PairStatus.COMPLETE)

    @property
    def incomplete(self) -> int:
        return sum(pair.status is PairStatus.INCOMPLETE for pair in self.pairs)

    @property
    def flagged(self) -> int:
        """Tasks whose production run was flagged (``fork``: the tasks that paid for a branch)."""
        return sum(pair.flagged for pair in self.pairs)

    @property
    def counts(self) -> PairedCounts:
        return PairedCounts.from_pairs((p.control_success, p.treatment_success) for p in self.complete)

    @property
    def calls_per_task(self) -> float:
        return sum(self.model_calls) / len(self.model_calls)


def run_pilot(
    tasks: Iterable[Task],
    design: Design,
    workdir: Path,
    *,
    agent: OracleAgent,
    critic: OracleCritic,
    policy: Policy | None = None,
    agent_name: str = "env-agent",
    independent_rerun: bool = True,
) -> PilotResult:
    """Run every task through the guarded agent in one design; the store and checkpoints go under ``workdir``.

    ``independent_rerun=False`` (``full`` only) runs the treatment with the task seed as well: a replay, not a
    second sample, which must reproduce the ``fork`` design's pairs exactly (a branch is a treatment run that
    shares production's prefix), the end-to-end check of forks.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    guard = CriticGuard(
        critic,
        mode="pilot",
        design=design,
        policy=policy or Policy(),
        agent_name=agent_name,
        critic_timeout_s=None,  # a local function: no thread hop needed
        store=f"sqlite:///{workdir / f'{design}-guard.db'}",
    )
    connection = sqlite3.connect(workdir / f"{design}-checkpoints.db", check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # as the guard's store: no fsync per checkpoint (~4 per move)
    started = time.perf_counter()
    calls: list[int] = []
    steps: list[int] = []
    try:
        saver = SqliteSaver(connection)
        run = _fork_task if design == "fork" else functools.partial(_full_task, rerun=independent_rerun)
        for task in tasks:
            task_calls, task_steps = run(task, guard, saver, agent)
            calls.append(task_calls)
            steps.append(task_steps)
        pairs = tuple(pair for pair in guard.pairs() if pair.kind is PairKind.AB)
    finally:
        guard.close()
        connection.close()
    return PilotResult(design, pairs, tuple(calls), tuple(steps), time.perf_counter() - started)


def _model(agent: OracleAgent) -> ScriptedChatModel:
    return ScriptedChatModel(policy=agent, model_name="oracle-agent")


def _invoke(
    task: Task, context: EnvContext, guard: CriticGuard, saver: SqliteSaver, agent: OracleAgent, **kw: Any
) -> tuple[dict[str, Any], Any]:
    """One run of the task in ``context``; returns the final state and the middleware (for its shadow runner)."""
    graph, middleware = build_env_agent(_model(agent), context.env.tools, guard, saver, **kw)
    config = {
        "configurable": {"thread_id": f"{task.task_id}-{kw.get('arm', 'prod')}"},
        "recursion_limit": _STEPS_PER_MOVE * (task.max_steps + guard.policy.max_interventions) + 20,
    }
    final = graph.invoke({"messages": [HumanMessage(context.env.instruction)]}, config, context=context)
    return final, middleware


def _fork_task(task: Task, guard: CriticGuard, saver: SqliteSaver, agent: OracleAgent) -> tuple[int, int]:
    context = EnvContext(task.open_env(), seed=task.seed, max_steps=task.max_steps)
    try:
        _, middleware = _invoke(task, context, guard, saver, agent)
        middleware.close()  # waits for the task's shadow branch, if it forked one (the guard stays open)
        return context.total_model_calls, context.steps + sum(branch.steps for branch in context.branches)
    finally:
        context.close()


def _full_task(
    task: Task, guard: CriticGuard, saver: SqliteSaver, agent: OracleAgent, *, rerun: bool
) -> tuple[int, int]:
    runs: dict[Arm, str] = {}
    calls = steps = 0
    for arm in (Arm.CONTROL, Arm.TREATMENT):
        seed = task.seed + _OTHER_DRAW if rerun and arm is Arm.TREATMENT else task.seed
        context = EnvContext(task.open_env(), seed=seed, max_steps=task.max_steps)
        try:
            final, _ = _invoke(task, context, guard, saver, agent, arm=arm)
        finally:
            context.close()
        calls += context.model_calls
        steps += context.steps
        runs[arm] = _last_run(guard, context.env.task_id, arm)
        guard.record_outcome(runs[arm], judge({"task_id": task.task_id}, final))
    guard.open_pair(
        runs[Arm.CONTROL],
        control_run_id=runs[Arm.CONTROL],
        treatment_run_id=runs[Arm.TREATMENT],
        flagged=False,
    )
    return calls, steps


def _last_run(guard: CriticGuard, task_id: str, arm: Arm) -> str:
    """The id of the newest run of a task in one arm (the middleware keeps run ids in its private state)."""
    assert guard.store is not None
    runs = [run for run in guard.store.runs(guard.guard_key) if run.task_id == task_id and run.arm is arm]
    return max(runs, key=lambda run: run.started_at).run_id
