"""The bundled demo pilot behind ``make demo``: ``critic-guard pilot critic_guard_langgraph.demo:suite``.

A shadow pilot of a guarded ``create_agent`` agent on simulated tasks (:mod:`critic_guard_langgraph.sim`): a
scripted stochastic model that slips at some steps, and a noisy critic (AUROC 0.85) that catches many slips and
flags some right steps too. A rollback with feedback fixes a slipped step with probability 0.6 (recoveries) and
breaks a right one with probability 0.15 (disruptions), so the pilot shows both, and the report has to weigh
them. Production runs serve the control arm; the treatment arm runs in shadow from each run's first flag.

The ground truth of this world (:func:`~critic_guard_langgraph.sim.sim_truth`, fork design): the unguarded agent
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
from critic_guard_langgraph.shadow import READ_ONLY, ShadowToolGate
from critic_guard_langgraph.sim import SimCritic, SimScenario, sim_agent, sim_judge, sim_tasks

__all__ = ["DEMO_SCENARIO", "DEMO_TASKS", "suite"]

DEMO_SCENARIO = SimScenario(
    "demo",
    step_error=0.12,
    critic_auroc=0.85,
    recover=0.6,
    disrupt=0.15,
    description="a noisy critic whose rollbacks recover more runs than they disrupt (net +0.11)",
)
DEMO_TASKS = 150


def suite(seed: int = 0, tasks: int = DEMO_TASKS) -> PilotSuite:
    """The demo suite: ``tasks`` simulated tasks; ``seed`` draws the tasks, the model's slips and the critic's
    noise (the guard key names the seed, so each seed is its own evidence)."""
    scenario = replace(DEMO_SCENARIO, seed=seed)
    gate = ShadowToolGate({"record": READ_ONLY})  # the branch may run `record` for real: it has no side effects

    def agent(middleware: Any, checkpointer: Any) -> Any:
        return sim_agent(scenario, [*middleware, gate], checkpointer)

    return PilotSuite(
        name=f"demo-seed{seed}",
        tasks=[{**task.as_metadata(), "input": task.prompt()} for task in sim_tasks(tasks, seed=seed)],
        critic=SimCritic(scenario),
        adapter=LangGraphPilot(agent=agent, judge=sim_judge),
        policy=scenario.policy(),
    )
