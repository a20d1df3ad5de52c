"""Nothing a user typed is at rest unless content capture is on (docs/telemetry.md, "What the store keeps").

A real ``create_agent`` pilot with a scripted model, a real SQLite store (and PostgreSQL), a ``SqliteSaver`` and
the OTLP-JSON trace and metrics files. Marker strings are planted in the user's message, in a tool call's
arguments, in the runtime context (an ``api_key``), and quoted by the critic: a rationale that quotes the tool
arguments, and an exception whose message quotes them. The production run forks a shadow branch at its flagged
final answer, so the branch's run record, its steps and its judge are covered too.

With capture off no marker appears in any byte of the store (the database and its ``-wal`` file, read while open
and after close), of the trace files, or (the ``api_key``) of the checkpoint; critics and the judge still get the
whole task in process. With capture on (or allowlisted fields) they are where they are expected, through the
redaction hook if there is one. The store and trace files are created 0600.
"""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from psycopg import sql

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.store.base import RunRecord, StepRecord
from critic_guard.telemetry import configure_telemetry
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

INPUT_MARK = "zq-input-7f3a"  # typed by the user
ARG_MARK = "zq-arg-91c2"  # in the tool call's arguments, quoted by the critic
KEY_MARK = "zq-apikey-55e0"  # a credential in the runtime context
MARKS = (INPUT_MARK, ARG_MARK, KEY_MARK)
CONTEXT = {"task_id": "task-7", "api_key": KEY_MARK, "difficulty": "hard"}
POLICY = Policy(min_step=0)  # the final answer (step 1) may be flagged


@tool
def lookup(query: str) -> str:
    """Look a customer up (read-only)."""
    return "found"


def model_policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
    """One lookup whose arguments carry a marker, then a final answer (again after any guard note)."""
    if not any(isinstance(m, ToolMessage) for m in messages):
        return tool_call("lookup", query=f"customer {ARG_MARK}")
    return "done"


@dataclass
class Seen:
    """What the critic and the judge were given, in process."""

    critic: list[dict[str, Any]] = field(default_factory=list)
    judge: list[dict[str, Any]] = field(default_factory=list)


def quoting_critic(seen: Seen) -> Callable[[StepContext], Verdict]:
    """Fails on the tool call with an error quoting its arguments; flags the final answer with a rationale that
    quotes them."""

    def critic(ctx: StepContext) -> Verdict:
        seen.critic.append(dict(ctx.task))
        calls = ctx.proposed.get("tool_calls") or []
        if calls:
            raise ValueError(f"cannot judge the call {calls[0]['arguments']}")
        asked = [c for m in ctx.messages for c in m.get("tool_calls") or []]
        return Verdict(0.9, rationale=f"the answer ignores {asked[-1]['arguments']['query']!r}")

    return critic


def run_pilot_task(guard: CriticGuard, seen: Seen, checkpoints: Path) -> None:
    """One production run in mode pilot, forked at its flagged final answer; waits for the branch."""

    def judge(task: dict[str, Any], state: Any) -> bool:
        seen.judge.append(dict(task))
        return True

    conn = sqlite3.connect(checkpoints, check_same_thread=False)
    try:
        middleware = CriticGuardMiddleware(guard, judge=judge)
        model = ScriptedChatModel(policy=model_policy)
        agent = create_agent(model, [lookup], middleware=[middleware], checkpointer=SqliteSaver(conn))
        config = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:6]}"}}
        out = agent.invoke({"messages": [HumanMessage(f"Find customer {INPUT_MARK}")]}, config, context=CONTEXT)
        assert out["messages"][-1].text == "done"
        assert middleware.wait(30)
        middleware.close()
    finally:
        conn.close()


def file_bytes(directory: Path, prefix: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.glob(f"{prefix}*")) if p.is_file())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@dataclass
class Rest:
    """What one run of the scenario left at rest, and what was seen in process."""

    seen: Seen
    runs: list[RunRecord]
    steps: list[StepRecord]
    pair_reasons: list[str | None]
    store: bytes  # the database and its -wal file, while open and after close
    traces: bytes  # spans and metrics files
    checkpoint: bytes
    modes: dict[str, int]


def run_sqlite(tmp_path: Path, *, capture: bool, redact: Callable[[str], str] | None = None, **config: Any) -> Rest:
    db, traces = tmp_path / "guard.db", tmp_path / "traces.jsonl"
    handles = configure_telemetry(file=traces, set_global=False, capture_content=capture, redact=redact)
    seen = Seen()
    guard = CriticGuard(
        quoting_critic(seen),
        mode="pilot",
        policy=POLICY,
        store=f"sqlite:///{db}",
        telemetry=handles.telemetry,
        **config,
    )
    run_pilot_task(guard, seen, tmp_path / "checkpoints.db")
    assert guard.store is not None
    runs = guard.store.runs()
    steps = [s for r in runs for s in guard.store.steps_of(r.run_id)]
    reasons = [p.reason for p in guard.pairs()]
    guard.store.flush()
    modes = {p.name: mode_of(p) for p in tmp_path.glob("guard.db*")}
    while_open = file_bytes(tmp_path, "guard.db")
    guard.close()
    handles.shutdown()
    modes.update({p.name: mode_of(p) for p in tmp_path.glob("traces*")})
    return Rest(
        seen,
        runs,
        steps,
        reasons,
        while_open + file_bytes(tmp_path, "guard.db"),
        file_bytes(tmp_path, "traces"),
        file_bytes(tmp_path, "checkpoints.db"),
        modes,
    )


def assert_forked_and_judged_whole(rest: Rest) -> None:
    """The scenario ran as intended, and critics and judges saw the whole task in process."""
    assert len(rest.runs) == 2 and {r.parent_run_id is None for r in rest.runs} == {True, False}  # production, branch
    assert len(rest.pair_reasons) == 1
    assert any(s.p_fail is None for s in rest.steps) and any(s.p_fail == 0.9 for s in rest.steps)
    for task in [*rest.seen.critic, *rest.seen.judge]:
        assert task["api_key"] == KEY_MARK and INPUT_MARK in task["input"] and task["task_id"] == "task-7"
    assert len(rest.seen.judge) == 2  # the production run's judge and the branch's


def test_with_capture_off_nothing_typed_is_at_rest(tmp_path: Path) -> None:
    rest = run_sqlite(tmp_path, capture=False)
    assert_forked_and_judged_whole(rest)
    assert [r.task for r in rest.runs] == [{"task_id": "task-7"}] * 2 and {r.task_id for r in rest.runs} == {"task-7"}
    assert {s.critic_error for s in rest.steps if s.p_fail is None} == {"ValueError"}
    assert {s.rationale for s in rest.steps} == {None}
    assert b'"task_id"' in rest.store and b"invoke_agent" in rest.traces  # both were written (and read)
    for mark in MARKS:
        assert mark.encode() not in rest.store, mark
        assert mark.encode() not in rest.traces, mark
    assert KEY_MARK.encode() not in rest.checkpoint  # the runtime context is never checkpointed
    assert INPUT_MARK.encode() in rest.checkpoint  # (the conversation is: the agent's own history)
    assert set(rest.modes) >= {"guard.db", "guard.db-wal", "guard.db-shm", "traces.jsonl", "traces.metrics.jsonl"}
    assert rest.modes == dict.fromkeys(rest.modes, 0o600)


def test_with_capture_on_content_is_kept_where_expected(tmp_path: Path) -> None:
    rest = run_sqlite(tmp_path, capture=True)
    assert_forked_and_judged_whole(rest)
    for run in rest.runs:  # as before this switch existed: the whole task
        assert run.task == {**CONTEXT, "input": f"Find customer {INPUT_MARK}"}
    [error] = {s.critic_error for s in rest.steps if s.p_fail is None}
    assert error is not None and error.startswith("ValueError: cannot judge the call") and ARG_MARK in error
    assert {s.rationale for s in rest.steps if s.p_fail == 0.9} == {f"the answer ignores 'customer {ARG_MARK}'"}
    assert all(mark.encode() in rest.store for mark in MARKS)
    assert ARG_MARK.encode() in rest.traces  # the proposed tool call, as gen_ai.output.messages


def test_allowlisted_task_fields_are_kept_verbatim_and_nothing_else(tmp_path: Path) -> None:
    rest = run_sqlite(tmp_path, capture=False, task_fields=["input", "difficulty"])
    assert_forked_and_judged_whole(rest)
    for run in rest.runs:
        assert run.task == {"task_id": "task-7", "input": f"Find customer {INPUT_MARK}", "difficulty": "hard"}
    assert {s.rationale for s in rest.steps} == {None}
    assert INPUT_MARK.encode() in rest.store
    assert ARG_MARK.encode() not in rest.store and KEY_MARK.encode() not in rest.store


def test_with_capture_on_the_redaction_hook_and_the_allowlist_apply(tmp_path: Path) -> None:
    def redact(text: str) -> str:
        return text.replace(ARG_MARK, "[arg]")

    rest = run_sqlite(tmp_path, capture=True, redact=redact, task_fields=["difficulty"])
    assert_forked_and_judged_whole(rest)
    assert [r.task for r in rest.runs] == [{"task_id": "task-7", "difficulty": "hard"}] * 2
    assert {s.rationale for s in rest.steps if s.p_fail == 0.9} == {"the answer ignores 'customer [arg]'"}
    [error] = {s.critic_error for s in rest.steps if s.p_fail is None}
    assert error is not None and "[arg]" in error
    for mark in MARKS:
        assert mark.encode() not in rest.store, mark
        assert mark.encode() not in rest.traces, mark


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


def dump_rows(url: str) -> str:
    """Every row of every table in the schema ``url`` points at, as JSON text."""
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchall()
        ]
        rows = []
        for table in tables:
            query = sql.SQL("SELECT row_to_json(dumped)::text FROM {} AS dumped").format(sql.Identifier(table))
            rows += [r[0] for r in conn.execute(query).fetchall()]
    assert {"runs", "steps", "pairs"} <= set(tables)
    return "\n".join(rows)


@pytest.mark.postgres
@pytest.mark.parametrize("capture", [False, True])
def test_postgres_keeps_content_only_with_capture_on(capture: bool, postgres_schema_url: str, tmp_path: Path) -> None:
    url = postgres_schema_url
    seen = Seen()
    with CriticGuard(quoting_critic(seen), mode="pilot", policy=POLICY, store=url, capture_content=capture) as guard:
        run_pilot_task(guard, seen, tmp_path / "checkpoints.db")
    dump = dump_rows(url)
    assert '"task_id": "task-7"' in dump or '"task_id":"task-7"' in dump
    assert seen.judge and all(task["api_key"] == KEY_MARK for task in [*seen.critic, *seen.judge])
    for mark in MARKS:
        assert (mark in dump) is capture, mark
