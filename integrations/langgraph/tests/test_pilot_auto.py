"""Mode ``auto`` end to end through the middleware: the lifecycle disables a harmful intervention and keeps (enables)
a helpful one, from the pairs a pilot collects, and production runs follow the decision at once.

Seeded scenarios of the calculator suite (``pilot_suites``): half the tasks are clean, the other half ``fragile``
(the critic's false alarm makes the rollback break a right run: only disruptions) or ``slip`` (the rollback fixes
a wrong step: only recoveries). Tasks run one at a time, so the transition happens at a known pair.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from pilot_suites import calc_suite

from critic_guard.lifecycle import ACTOR_MONITOR, GuardState
from critic_guard.pilot import run_pilot
from critic_guard.types import Action, Arm


def seeded_kinds(other: str, seed: int = 7, n: int = 40) -> list[str]:
    rng = random.Random(seed)
    return rng.choices(["clean", other], k=n)


def auto_pilot(kinds: list[str], tmp_path: Path) -> dict[str, Any]:
    suite = calc_suite(kinds, name="auto")
    with suite.guard(mode="auto", store=f"sqlite:///{tmp_path / 'g.db'}") as guard:
        result = asyncio.run(run_pilot(suite, guard, concurrency=1))
        store = guard.store
        assert store is not None
        [transition] = guard.transitions()
        production = [r for r in store.runs(guard.guard_key) if r.parent_run_id is None]
        after = [r for r in production if r.started_at > transition.at]
        return {
            "result": result,
            "transition": transition,
            "after": after,
            "actions": {r.run_id: {s.action for s in store.steps_of(r.run_id)} for r in after},
            "outcomes": {r.run_id: store.get_outcome(r.run_id) for r in after},
            "pairs_after": [p for p in guard.pairs() if p.created_at > transition.at],
        }


def test_auto_disables_a_harmful_intervention(tmp_path: Path) -> None:
    kinds = seeded_kinds("fragile")
    seen = auto_pilot(kinds, tmp_path)
    transition, result = seen["transition"], seen["result"]
    assert (transition.from_state, transition.to_state, transition.actor) == (
        GuardState.PILOT,
        GuardState.DISABLED,
        ACTOR_MONITOR,
    )
    assert transition.reason.startswith("harm proven")
    assert result.lifecycle.state is GuardState.DISABLED
    assert result.tally.n01 == 0 and result.tally.n10 > 0
    assert seen["after"], "the harm must be proven before the last task"
    assert all(r.arm is Arm.CONTROL for r in seen["after"])  # production serves control once disabled ...
    assert all(actions <= {Action.NONE} for actions in seen["actions"].values())  # ... and never intervenes
    assert seen["pairs_after"] == [] and result.tally.unpaired == len(seen["after"])  # no more forks


def test_auto_keeps_a_helpful_intervention(tmp_path: Path) -> None:
    kinds = seeded_kinds("slip")
    seen = auto_pilot(kinds, tmp_path)
    transition, result = seen["transition"], seen["result"]
    assert (transition.from_state, transition.to_state, transition.actor) == (
        GuardState.PILOT,
        GuardState.ENABLED,
        ACTOR_MONITOR,
    )
    assert result.lifecycle.state is GuardState.ENABLED and result.tally.n10 == 0
    slips = [r for r in seen["after"] if kinds[int(str(r.task_id)[1:])] == "slip"]
    assert slips, "some slipping task must run after the benefit is proven"
    for run in slips:  # production itself now follows the treatment arm: it rolls the slip back and succeeds
        assert run.arm is Arm.TREATMENT
        assert Action.ROLLBACK in seen["actions"][run.run_id]
        assert seen["outcomes"][run.run_id].success is True
