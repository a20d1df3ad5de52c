"""What the guard writes at rest: the task record of a run, and texts that may quote what a user typed.

Why a rule of its own: the store outlives the request and is read by other people (``critic-guard status``, the
report, a database dump), so it must not keep the user's message, the runtime context (which often holds
credentials, e.g. an ``api_key``) or critic rationales and error texts that quote tool arguments, unless the user
opted in. The switch is the guard's content-capture switch, the one its traces follow (docs/telemetry.md, "What
the store keeps"), so one setting decides for both.

* The task record keeps its ids (``task_id`` / ``id``, which pair runs of one task, and ``pilot_attempt``, by which
  a resumed pilot finds an interrupted attempt's runs) and the fields the user allowlists (``task_fields``),
  verbatim. With no allowlist, capture on keeps every field (strings through the redaction hook), capture off
  none. The caller keeps the full task in process: critics and judges see it unchanged.
* A text that may quote content (a critic's rationale, an exception's message) is kept through the redaction hook
  with capture on; with capture off a rationale is dropped and an error is kept as its type alone, except the
  guard's own descriptions (a critic timeout, the shape of a malformed verdict), which quote no content.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from critic_guard.critic_pool import CriticPoolExhausted, CriticTimeout, describe_error
from critic_guard.critics import MalformedVerdictError
from critic_guard.telemetry.content import ContentPolicy

__all__ = ["ATTEMPT_KEY", "TASK_ID_KEYS", "error_text", "task_record"]

ATTEMPT_KEY = "pilot_attempt"
"""The task-metadata key naming the pilot attempt a run belongs to (see :mod:`critic_guard.pilot`)."""
TASK_ID_KEYS = ("task_id", "id", ATTEMPT_KEY)
"""Task fields that are ids, kept in every task record."""
# the guard's own errors: their text is ours (a timeout, the shape of a malformed verdict), never the user's content
_FIXED_TEXT = (CriticTimeout, CriticPoolExhausted, MalformedVerdictError)


def task_record(task: Mapping[str, Any], *, fields: Collection[str] | None, content: ContentPolicy) -> dict[str, Any]:
    """The part of ``task`` the store may keep (see the module docstring)."""
    kept = {key: task[key] for key in TASK_ID_KEYS if key in task}
    if fields is not None:
        kept.update((key, task[key]) for key in fields if key in task)
        return kept
    everything = content.tree(task)
    return kept if everything is None else {**everything, **kept}


def error_text(exc: BaseException, content: ContentPolicy) -> str:
    """The description of ``exc`` the store may keep: ``"Type: message"`` redacted with capture on, else the type
    alone (or the guard's own description of a critic timeout or a malformed verdict)."""
    if content.capture:
        return content.text(describe_error(exc)) or type(exc).__name__
    if isinstance(exc, _FIXED_TEXT):
        return describe_error(exc)
    return type(exc).__name__
