"""Column lists and row-to-record mapping for runs and steps, shared by the SQLite and PostgreSQL backends.

Both backends select the same columns in the same order; they differ only in how the task's JSON comes back
(SQLite: text to decode; PostgreSQL ``jsonb``: already a mapping), so that is the one parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from critic_guard.store.base import RunRecord, StepRecord
from critic_guard.types import Action, Arm

RUN_COLUMNS = (
    "run_id, guard_key, agent_name, arm, task_id, task, parent_run_id, fork_step, status, started_at, ended_at"
)
STEP_COLUMNS = (
    "run_id, step, attempt, p_fail, label, rationale, flagged, action, reason, critic_error, latency_s, created_at"
)


def run_from_row(r: Sequence[Any], *, task_is_text: bool) -> RunRecord:
    task = r[5]
    if task is not None and task_is_text:
        task = json.loads(task)
    return RunRecord(
        run_id=r[0],
        guard_key=r[1],
        agent_name=r[2],
        arm=Arm(r[3]),
        task_id=r[4],
        task=task,
        parent_run_id=r[6],
        fork_step=r[7],
        status=r[8],
        started_at=r[9],
        ended_at=r[10],
    )


def run_values(run: RunRecord) -> tuple[Any, ...]:
    """A run as the values of ``RUN_COLUMNS``; its task as sorted JSON text (what both backends store)."""
    task = None if run.task is None else json.dumps(dict(run.task), sort_keys=True, default=str)
    return (
        run.run_id,
        run.guard_key,
        run.agent_name,
        str(run.arm),
        run.task_id,
        task,
        run.parent_run_id,
        run.fork_step,
        run.status,
        run.started_at,
        run.ended_at,
    )


def step_values(step: StepRecord) -> tuple[Any, ...]:
    """A step as the values of ``STEP_COLUMNS`` (both backends accept a bool for ``flagged``)."""
    return (
        step.run_id,
        step.step,
        step.attempt,
        step.p_fail,
        step.label,
        step.rationale,
        step.flagged,
        str(step.action),
        str(step.reason),
        step.critic_error,
        step.latency_s,
        step.created_at,
    )


def step_from_row(r: Sequence[Any]) -> StepRecord:
    return StepRecord(
        run_id=r[0],
        step=r[1],
        attempt=r[2],
        p_fail=r[3],
        label=r[4],
        rationale=r[5],
        flagged=bool(r[6]),
        action=Action(r[7]),
        reason=r[8],
        critic_error=r[9],
        latency_s=r[10],
        created_at=r[11],
    )
