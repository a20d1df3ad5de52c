"""The bundled demo pilots: ``critic-guard demo`` (``make demo``; the same as ``critic-guard pilot
critic_guard_langgraph.demo:suite``: intervening helps) and ``critic_guard_langgraph.demo:harmful`` (the
Intervention Paradox: as good a critic, and it harms).

A shadow pilot of a guarded ``create_agent`` agent on simulated tasks (:mod:`critic_guard_langgraph.sim`): a
scripted stochastic model that slips at some steps, and a noisy critic (AUROC 0.85 at telling a slipped step from
a right one; its name says ``mistake-auroc0.85``) that catches many slips and flags some right steps too. The
report's critic AUROC is lower (0.543 for seed 0): it scores each step against its run's final outcome, the only
label a store has (docs/report.md, "Critic quality"). A rollback with feedback fixes a slipped step with
probability 0.6 (recoveries) and breaks a right one with probability 0.15 (disruptions), so the pilot shows both,
and the report has to weigh them. Production runs serve the control arm; the treatment arm runs in shadow from each
run's first flag.

The ground truth of this world (``benchmarks/sim_truth.py``, fork design): the unguarded agent
fails 54% of tasks, intervening recovers r = 0.30 of them and disrupts d = 0.11 of the successes, so the net
effect is +0.11 (p = 0.54 > p* = 0.26: intervening helps). With 150 tasks a pilot usually says so with 95%
confidence; with fewer (``--tasks 40``) it is usually inconclusive, which is the honest answer for a small pilot.
Every draw is a pure function of the conversation and the seed, so a run is reproducible and a rerun after a crash
redoes an interrupted task exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from critic_guard.pilot import PilotSuite
from critic_guard_langgraph.pilot import LangGraphPilot
from critic_guard_langgraph.shadow import READ_ONLY
from critic_guard_langgraph.sim import SimScenario, sim_agent, sim_judge, sim_tasks
from critic_guard_langgraph.sim_critic import SimCritic

__all__ = ["DEMO_SCENARIO", "DEMO_TASKS", "HARMFUL_SCENARIO", "harmful", "suite"]

DEMO_SCENARIO = SimScenario(
    "demo",
    step_error=0.12,
    critic_auroc=0.85,
    recover=0.6,
    disrupt=0.15,
    description="a noisy critic whose rollbacks recover more runs than they disrupt (net +0.11)",
)
DEMO_TASKS = 150
HARMFUL_SCENARIO = SimScenario(
    "demo-harmful",
    step_error=0.05,
    critic_auroc=0.85,
    recover=0.6,
    disrupt=0.6,
    critic_shift=0.4,
    description="the paradox: the same critic quality on an agent that rarely fails; its rollbacks harm (net -0.16)",
)


def suite(seed: int = 0, tasks: int = DEMO_TASKS) -> PilotSuite:
    """The demo suite: ``tasks`` simulated tasks; ``seed`` draws the tasks, the model's slips and the critic's
    noise (the guard key names the seed, so each seed is its own evidence)."""
    return _suite(DEMO_SCENARIO, "demo", seed, tasks)


def harmful(seed: int = 0, tasks: int = DEMO_TASKS) -> PilotSuite:
    """The Intervention Paradox in one command (``critic-guard pilot critic_guard_langgraph.demo:harmful``): a critic
    as good as the demo's (AUROC 0.85) watching an agent that fails only 27% of tasks, whose talkative critic flags
    right steps and whose rollbacks break them as often as they fix wrong ones. Truth (fork design): p = 0.27,
    r = 0.31, d = 0.33, net -0.16; a good critic, a harmful intervention."""
    return _suite(HARMFUL_SCENARIO, "demo-harmful", seed, tasks)


def _suite(world: SimScenario, name: str, seed: int, tasks: int) -> PilotSuite:
    scenario = replace(world, seed=seed)

    def agent(middleware: Any, checkpointer: Any) -> Any:
        return sim_agent(scenario, middleware, checkpointer)

    return PilotSuite(
        name=f"{name}-seed{seed}",
        tasks=[{**task.as_metadata(), "input": task.prompt()} for task in sim_tasks(tasks, seed=seed)],
        critic=SimCritic(scenario),
        # the branch may run `record` for real: it has no side effects
        adapter=LangGraphPilot(agent=agent, judge=sim_judge, shadow_tools={"record": READ_ONLY}),
        policy=scenario.policy(),
    )
