"""Whether message content goes into telemetry, and how it is redacted on the way.

The GenAI conventions make content (prompts, model output, tool arguments and results) opt-in, because it is
likely to hold personal data. We follow that: by default no content is recorded, not even the critic's rationale
(an LLM critic's rationale routinely quotes the trajectory) or the feedback text shown to the agent. When a user
opts in, every string passes through their redaction hook first; if the hook fails, the placeholder
``[redaction failed]`` is recorded instead of the unredacted text.

Opt-in is per ``GuardTelemetry`` (``capture_content=True``) or, when that is left as None, through the
environment variable the GenAI instrumentations use, ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
(``true``, ``span_only`` or ``span_and_event`` turn it on).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from critic_guard.types import Message

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_ENV_ON = frozenset({"true", "1", "yes", "span_only", "span_and_event"})
REDACTION_FAILED = "[redaction failed]"

Redactor = Callable[[str], str]


def capture_from_env() -> bool:
    """What the GenAI env var asks for (off when unset, as the conventions require)."""
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in _ENV_ON


class ContentPolicy:
    """Decides if content is recorded and applies the redaction hook to every string that is."""

    __slots__ = ("_redact", "capture")

    def __init__(self, capture: bool | None = None, redact: Redactor | None = None) -> None:
        if redact is not None and not callable(redact):
            raise TypeError(f"redact must be a callable str -> str, got {type(redact).__name__}")
        self.capture: bool = capture_from_env() if capture is None else bool(capture)
        self._redact = redact

    def text(self, value: str | None) -> str | None:
        """The recordable form of ``value``: None when capture is off (or nothing to record), else redacted."""
        if not self.capture or value is None:
            return None
        return self._apply(str(value))

    def tree(self, value: Mapping[str, Any]) -> dict[str, Any] | None:
        """The recordable form of a mapping (e.g. a task): None when capture is off, else every string inside
        redacted (non-JSON values become redacted text)."""
        if not self.capture:
            return None
        return {str(k): self._redact_tree(v) for k, v in value.items()}

    def output_messages(self, message: Message) -> str | None:
        """The proposed assistant message as ``gen_ai.output.messages`` JSON (GenAI output-messages schema).

        Text becomes a ``text`` part and each tool call a ``tool_call`` part; every string inside, including
        those nested in tool arguments, is redacted.
        """
        if not self.capture:
            return None
        parts: list[dict[str, Any]] = []
        content = message.get("content")
        if content:  # a str per types.Message; other shapes (content blocks) are recorded as redacted text
            text = content if isinstance(content, str) else str(content)
            parts.append({"type": "text", "content": self._apply(text)})
        tool_calls = message.get("tool_calls") or []
        for call in tool_calls:
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": call.get("name"),
                    "arguments": self._redact_tree(call.get("arguments")),
                }
            )
        out = {
            "role": message.get("role", "assistant"),
            "parts": parts,
            "finish_reason": "tool_call" if tool_calls else "stop",
        }
        return json.dumps([out], ensure_ascii=False)

    def _apply(self, value: str) -> str:
        if self._redact is None:
            return value
        try:
            redacted = self._redact(value)
        except Exception:  # a broken hook must never leak the text it was meant to hide
            return REDACTION_FAILED
        return redacted if isinstance(redacted, str) else REDACTION_FAILED

    def _redact_tree(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self._apply(obj)
        if isinstance(obj, Mapping):
            return {str(k): self._redact_tree(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._redact_tree(v) for v in obj]
        if obj is None or isinstance(obj, bool | int | float):
            return obj
        return self._apply(str(obj))  # anything else is recorded as (redacted) text, never unredacted
