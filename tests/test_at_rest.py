"""What the guard keeps at rest (critic_guard/at_rest.py, docs/telemetry.md "What the store keeps"), on a real
SQLite store: the task record, rationales and error texts under the content switch, and owner-only files.

The end-to-end version (a real create_agent pilot, markers searched in the bytes of the store, the traces, the
checkpoint, and PostgreSQL's rows) is integrations/langgraph/tests/test_content_at_rest.py.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from critic_guard.config import GuardConfig
from critic_guard.guard import CriticGuard
from critic_guard.store import SQLiteStore
from critic_guard.telemetry import GuardTelemetry, configure_telemetry
from critic_guard.telemetry.export import JsonLinesAppender
from critic_guard.types import Arm, StepContext, Verdict

TASK = {"task_id": "t-1", "pilot_attempt": "a-9", "input": "my card is 4242", "api_key": "sk-secret", "tier": "gold"}
MESSAGES = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": []})


def ctx(run_id: str) -> StepContext:
    return StepContext(run_id, 0, MESSAGES, TASK, Arm.CONTROL)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def redact_all(text: str) -> str:
    return "[r]"


@pytest.mark.parametrize(
    ("capture", "redact", "fields", "stored"),
    [
        (False, None, None, {"task_id": "t-1", "pilot_attempt": "a-9"}),  # ids only
        (False, None, ["tier"], {"task_id": "t-1", "pilot_attempt": "a-9", "tier": "gold"}),
        (True, None, None, TASK),  # everything, as before the switch
        (True, None, ["tier", "absent"], {"task_id": "t-1", "pilot_attempt": "a-9", "tier": "gold"}),  # strict
        (
            True,
            redact_all,
            None,
            {"task_id": "t-1", "pilot_attempt": "a-9", "input": "[r]", "api_key": "[r]", "tier": "[r]"},
        ),
        (
            True,
            redact_all,
            ["tier"],
            {"task_id": "t-1", "pilot_attempt": "a-9", "tier": "gold"},
        ),  # allowlisted: verbatim
    ],
)
def test_the_task_record_keeps_ids_and_what_the_switch_and_allowlist_allow(
    capture: bool, redact: Callable[[str], str] | None, fields: list[str] | None, stored: dict[str, Any]
) -> None:
    with SQLiteStore(":memory:") as store:
        telemetry = GuardTelemetry(capture_content=capture, redact=redact)
        guard = CriticGuard(lambda c: 0.1, store=store, telemetry=telemetry, task_fields=fields)
        run_id = guard.start_run(task=TASK)
        assert store.get_run(run_id).task == stored
        assert store.get_run(run_id).task_id == "t-1"


def test_the_config_switch_decides_when_the_guard_makes_its_own_telemetry() -> None:
    with SQLiteStore(":memory:") as store:
        off = CriticGuard(lambda c: 0.1, store=store)
        on = CriticGuard(lambda c: 0.1, store=store, capture_content=True)
        assert store.get_run(off.start_run(task=TASK)).task == {"task_id": "t-1", "pilot_attempt": "a-9"}
        assert store.get_run(on.start_run(task=TASK)).task == TASK


def test_task_fields_are_validated() -> None:
    assert GuardConfig(task_fields=["a", "b"]).task_fields == frozenset({"a", "b"})
    with pytest.raises(ValidationError, match="non-empty field names"):
        GuardConfig(task_fields=[""])
    with pytest.raises(ValidationError, match="valid frozenset"):
        GuardConfig(task_fields="input")  # a str is not a list of names


def _slow(c: StepContext) -> Verdict:
    time.sleep(0.3)  # past the 0.02 s timeout below
    return Verdict(0.9, "late")


def _quoting(c: StepContext) -> Verdict:
    raise ValueError("cannot parse {'to': 'ada@example.com'}")


@pytest.mark.parametrize(
    ("critic", "capture", "rationale", "error"),
    [
        (lambda c: Verdict(0.9, "it mails ada@example.com"), False, None, None),
        (lambda c: Verdict(0.9, "it mails ada@example.com"), True, "it mails ada@example.com", None),
        (_quoting, False, None, "ValueError"),
        (_quoting, True, None, "ValueError: cannot parse {'to': 'ada@example.com'}"),
        # the guard's own descriptions (a malformed verdict's shape, a timeout) quote no content: kept
        (lambda c: "garbage", False, None, "MalformedVerdictError: critic returned str"),
        (_slow, False, None, "timeout after 0.02s"),
    ],
)
def test_rationales_and_error_texts_follow_the_switch(
    critic: Any, capture: bool, rationale: str | None, error: str | None
) -> None:
    with SQLiteStore(":memory:") as store:
        guard = CriticGuard(critic, mode="on", store=store, capture_content=capture, critic_timeout_s=0.02)
        review = guard.review(ctx(guard.start_run()))
        [step] = store.steps_of(review.run_id)
        assert step.rationale == rationale
        assert (step.critic_error or "")[: len(error or "")] == (error or "")
        assert (step.critic_error is None) is (error is None)
        if review.critic_error is not None:  # in process the whole text is still there
            assert review.critic_error.startswith(("ValueError: cannot parse", "MalformedVerdictError", "timeout"))


def test_store_files_are_created_owner_only(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "sub" / "g.db") as store:
        CriticGuard(lambda c: 0.1, store=store).start_run()
        files = sorted(p.name for p in (tmp_path / "sub").iterdir())
        modes = {name: mode_of(tmp_path / "sub" / name) for name in files}
    assert files == ["g.db", "g.db-shm", "g.db-wal"]
    assert modes == dict.fromkeys(files, 0o600)
    appender = JsonLinesAppender(tmp_path / "t.jsonl")
    appender.append("{}")
    appender.close()
    assert mode_of(tmp_path / "t.jsonl") == 0o600


def test_existing_files_keep_their_mode(tmp_path: Path) -> None:
    """0600 is set at creation; a file the operator made keeps its mode (never widened, never changed)."""
    for name in ("guard.db", "traces.jsonl"):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o640)
    handles = configure_telemetry(file=tmp_path / "traces.jsonl", set_global=False)
    with CriticGuard(lambda c: 0.1, store=f"sqlite:///{tmp_path / 'guard.db'}", telemetry=handles.telemetry) as g:
        g.end_run(g.start_run(), success=True)
    handles.shutdown()
    assert mode_of(tmp_path / "guard.db") == mode_of(tmp_path / "traces.jsonl") == 0o640
    assert b"invoke_agent" in (tmp_path / "traces.jsonl").read_bytes()
