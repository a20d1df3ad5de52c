"""The simulated agent's critic: it reads the truth from the conversation and has exactly the scenario's AUROC.

Why apart from the agent (critic_guard_langgraph/sim.py): the model and the critic are the two sides a pilot
measures, and a critic sees only neutral messages (no metadata), never the model's state.

**Ground truth** the critic can read. The model's replies say whether they are mistakes only in their metadata, so
:class:`SimCritic` recomputes the truth from the task in the conversation: a recorded value differs from the task's,
or an answer differs from the sum of the values recorded. Its score is binormal: ``s = delta * mistake + z``,
``z ~ N(0, 1)`` drawn from a digest of the proposed message (its id encodes the whole conversation),
``delta = sqrt(2) * Phi^-1(auroc)``, and ``p_fail = Phi(s - delta / 2 + critic_shift)``. So the critic's AUROC at
telling a mistaken step from a right one is exactly ``critic_auroc``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from statistics import NormalDist

from critic_guard.types import Message, StepContext, Verdict
from critic_guard_langgraph.sim import SimCounts, SimScenario, SimTask

__all__ = ["SimCritic"]

_PHI = NormalDist()


class SimCritic:
    """A critic with exactly the scenario's AUROC at telling mistaken steps from right ones (module docstring).

    It reads the truth from the conversation (the task's values are in its prompt), not from the model: any
    proposal can be judged, in production or in a shadow branch. Its noise is a pure function of the proposed
    message, so re-judging a step gives the same verdict.
    """

    native_async = False

    def __init__(self, scenario: SimScenario, counts: SimCounts | None = None) -> None:
        self.scenario = scenario
        self.counts = counts
        # "mistake-auroc": the AUROC at telling a mistaken step from a right one (which only the simulator knows),
        # not the report's AUROC of step scores against their run's outcome (docs/report.md, "Critic quality")
        self.name = (
            f"sim-critic-mistake-auroc{scenario.critic_auroc:g}-shift{scenario.critic_shift:g}-s{scenario.seed}-v1"
        )

    def judge(self, ctx: StepContext) -> Verdict:
        task = _find_neutral_task(ctx.messages)
        if task is None:
            return Verdict(0.0, rationale="not a simulator task")
        if self.counts is not None:
            self.counts.add("critic", task.task_id)
        mistake = _neutral_mistake(task, ctx.messages)
        key = f"sim-critic:{self.scenario.seed}:{ctx.proposed.get('id')}:{len(ctx.messages)}"
        z = random.Random(hashlib.sha256(key.encode()).hexdigest()).gauss(0.0, 1.0)
        s = self.scenario.separation * mistake + z
        p_fail = _PHI.cdf(s - self.scenario.separation / 2.0 + self.scenario.critic_shift)
        return Verdict(p_fail, rationale="this step looks wrong" if p_fail >= self.scenario.tau else None)

    async def ajudge(self, ctx: StepContext) -> Verdict:
        return self.judge(ctx)


def _find_neutral_task(messages: Sequence[Message]) -> SimTask | None:
    for m in messages:
        if m["role"] == "user":
            found = SimTask.parse(str(m.get("content", "")))
            if found is not None:
                return found[0]
    return None


def _neutral_mistake(task: SimTask, messages: Sequence[Message]) -> bool:
    """Whether the proposed (last) message is a mistake, from the task and the steps that ran before it."""
    done = [int(c["arguments"]["value"]) for m in messages[:-1] for c in m.get("tool_calls") or ()]
    calls = messages[-1].get("tool_calls") or ()
    if calls:
        step = len(done)
        value = int(calls[0]["arguments"]["value"])
        return step >= len(task.values) or value != task.values[step]
    return str(messages[-1].get("content", "")).strip() != str(sum(done))
