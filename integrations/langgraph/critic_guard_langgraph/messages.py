"""LangChain messages <-> critic-guard's neutral messages, and where a guard note may go, in one place.

The core of critic-guard sees trajectories as OpenAI-style dicts (``critic_guard.types.Message``) so that it
never imports LangChain. Every conversion in this integration goes through :func:`to_neutral` and
:func:`from_neutral`.

What is kept: role, text content, tool calls (id, name, arguments), ``tool_call_id``, ``name`` and the
message ``id``. What is dropped on the way to the neutral form: non-text content blocks (images, audio: the
text blocks are joined), ``invalid_tool_calls`` (they never run; create_agent answers them with an error
``ToolMessage``), ``additional_kwargs`` / ``response_metadata`` (provider details a critic should not use).

A *guard note* is the feedback or warning the guard shows the agent. Provider APIs reject a user message
between an assistant message with tool calls and the tool results answering it, so :func:`insert_note` is the
only way this package places a note.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)

from critic_guard.types import Message

__all__ = [
    "NOTE_ID_PREFIX",
    "NeutralHistory",
    "from_neutral",
    "insert_note",
    "is_guard_note",
    "make_note",
    "note_index",
    "to_neutral",
]

M = TypeVar("M", bound=BaseMessage)

NOTE_ID_PREFIX = "critic-guard-note-"
"""Message ids of guard notes start with this, so UIs and scripted models can recognise them."""

_CHAT_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
}


@overload
def to_neutral(messages: BaseMessage) -> Message: ...
@overload
def to_neutral(messages: Sequence[BaseMessage]) -> list[Message]: ...
def to_neutral(messages: BaseMessage | Sequence[BaseMessage]) -> Message | list[Message]:
    """Convert one LangChain message, or a sequence of them, to the neutral (OpenAI-style) form."""
    if isinstance(messages, BaseMessage):
        return _message_to_neutral(messages)
    given: object = messages
    if isinstance(given, str | bytes) or not isinstance(given, Sequence):
        raise TypeError(f"to_neutral expects a BaseMessage or a sequence of them, got {type(messages).__name__}")
    return [_message_to_neutral(m) for m in messages]


class NeutralHistory:
    """The neutral form of each run's history, converted incrementally and only when a critic reads it.

    Why: the critic sees the whole trajectory at every step, and converting it costs about 2 µs per message, so a
    long run would pay O(steps²); and many critics read only the proposed message, or nothing (a classifier on a
    score). :meth:`view` therefore returns a lazy sequence: its length is free, an item is converted on its own,
    and the first slice or iteration converts the history through :meth:`convert`.

    :meth:`convert` reuses the cached prefix of the run's previous conversion. A run's history grows by appending,
    and LangGraph hands the same message objects to each step of an in-process run, so the cached prefix is reused
    as long as its messages are the very same objects (``is``, checked one by one: a few ns each); anything else is
    converted again. The cache holds strong references to the messages it compared against (so an identity is
    never recycled) and keeps at most ``max_runs`` runs, least recently used first out. Critics must treat the
    neutral messages as read-only: they are shared between steps.
    """

    def __init__(self, max_runs: int = 1024) -> None:
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, tuple[tuple[BaseMessage, ...], tuple[Message, ...]]] = OrderedDict()

    def view(self, run_id: str, messages: Sequence[BaseMessage]) -> Sequence[Message]:
        """A lazy neutral view of ``messages``, the current history of run ``run_id``."""
        return _HistoryView(self, run_id, messages)

    def convert(self, run_id: str, messages: Sequence[BaseMessage]) -> tuple[Message, ...]:
        """The neutral form of ``messages``, the current history of run ``run_id``."""
        with self._lock:
            cached = self._runs.get(run_id)
        kept = 0
        if cached is not None:
            for old, new in zip(cached[0], messages, strict=False):
                if old is not new:
                    break
                kept += 1
            neutral = cached[1][:kept] + tuple(_message_to_neutral(m) for m in messages[kept:])
        else:
            neutral = tuple(_message_to_neutral(m) for m in messages)
        with self._lock:
            self._runs[run_id] = (tuple(messages), neutral)
            self._runs.move_to_end(run_id)
            if len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        return neutral

    def forget(self, run_id: str) -> None:
        """Drop a finished run's cache."""
        with self._lock:
            self._runs.pop(run_id, None)


class _HistoryView(Sequence[Message]):
    """The neutral history of one step, converted on first use (see :meth:`NeutralHistory.view`)."""

    __slots__ = ("_converted", "_histories", "_messages", "_run_id")

    def __init__(self, histories: NeutralHistory, run_id: str, messages: Sequence[BaseMessage]) -> None:
        self._histories = histories
        self._run_id = run_id
        self._messages = messages
        self._converted: tuple[Message, ...] | None = None

    def _all(self) -> tuple[Message, ...]:
        if self._converted is None:
            self._converted = self._histories.convert(self._run_id, self._messages)
        return self._converted

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Message, ...]: ...
    def __getitem__(self, index: int | slice) -> Message | tuple[Message, ...]:
        if isinstance(index, slice):
            return self._all()[index]
        if self._converted is not None:
            return self._converted[index]
        return _message_to_neutral(self._messages[index])  # one message: no need to convert the rest

    def __iter__(self) -> Iterator[Message]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self._all() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._all())


def _message_to_neutral(message: BaseMessage) -> Message:
    out: Message
    if isinstance(message, AIMessage):
        out = {"role": "assistant", "content": message.text}
        if message.tool_calls:
            out["tool_calls"] = [
                {"id": call["id"], "name": call["name"], "arguments": dict(call["args"])} for call in message.tool_calls
            ]
    elif isinstance(message, HumanMessage):
        out = {"role": "user", "content": message.text}
    elif isinstance(message, SystemMessage):
        out = {"role": "system", "content": message.text}
    elif isinstance(message, ToolMessage):
        out = {"role": "tool", "content": message.text, "tool_call_id": message.tool_call_id}
    elif isinstance(message, ChatMessage):
        role = _CHAT_ROLES.get(message.role.lower())
        if role is None:
            raise ValueError(f"ChatMessage role {message.role!r} has no neutral equivalent")
        out = {"role": role, "content": message.text}
    else:
        raise TypeError(f"cannot convert {type(message).__name__} to a neutral message")
    if message.name is not None:
        out["name"] = message.name
    if message.id is not None:
        out["id"] = message.id
    return out


@overload
def from_neutral(messages: Mapping[str, Any]) -> BaseMessage: ...
@overload
def from_neutral(messages: Sequence[Mapping[str, Any]]) -> list[BaseMessage]: ...
def from_neutral(
    messages: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> BaseMessage | list[BaseMessage]:
    """Convert one neutral message, or a sequence of them, to LangChain messages."""
    if isinstance(messages, Mapping):
        return _message_from_neutral(messages)
    given: object = messages
    if isinstance(given, str | bytes) or not isinstance(given, Sequence):
        raise TypeError(f"from_neutral expects a message dict or a sequence of them, got {type(messages).__name__}")
    return [_message_from_neutral(m) for m in messages]


def _message_from_neutral(message: Mapping[str, Any]) -> BaseMessage:
    if not isinstance(message, Mapping):
        raise TypeError(f"a neutral message is a dict, got {type(message).__name__}")
    role = message.get("role")
    content = message.get("content", "")
    if content is None:  # OpenAI writes null content on assistant messages that only call tools
        content = ""
    if not isinstance(content, str):
        raise TypeError(f"neutral message content must be a str, got {type(content).__name__}")
    extra: dict[str, Any] = {k: message[k] for k in ("id", "name") if message.get(k) is not None}
    if role == "user":
        return HumanMessage(content=content, **extra)
    if role == "system":
        return SystemMessage(content=content, **extra)
    if role == "assistant":
        calls = [_tool_call_from_neutral(c) for c in message.get("tool_calls") or ()]
        return AIMessage(content=content, tool_calls=calls, **extra)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("a neutral tool message needs a non-empty str 'tool_call_id'")
        return ToolMessage(content=content, tool_call_id=call_id, **extra)
    raise ValueError(f"unknown neutral message role {role!r}; expected system, user, assistant or tool")


def _tool_call_from_neutral(call: Any) -> ToolCall:
    if not isinstance(call, Mapping):
        raise TypeError(f"a neutral tool call is a dict, got {type(call).__name__}")
    name, arguments, call_id = call.get("name"), call.get("arguments", {}), call.get("id")
    if not isinstance(name, str) or not name:
        raise ValueError("a neutral tool call needs a non-empty str 'name'")
    if not isinstance(arguments, Mapping):
        raise TypeError(f"tool call {name!r}: 'arguments' must be a dict, got {type(arguments).__name__}")
    if call_id is not None and not isinstance(call_id, str):
        raise TypeError(f"tool call {name!r}: 'id' must be a str, got {type(call_id).__name__}")
    return ToolCall(name=name, args=dict(arguments), id=call_id, type="tool_call")


def make_note(text: str, key: str) -> HumanMessage:
    """A guard note: a user-role message whose id marks it as the guard's (``key`` makes the id unique)."""
    return HumanMessage(content=text, id=f"{NOTE_ID_PREFIX}{key}")


def is_guard_note(message: BaseMessage) -> bool:
    """Whether ``message`` is a note the guard inserted (feedback after a rollback, or an APPEND warning)."""
    return isinstance(message, HumanMessage) and (message.id or "").startswith(NOTE_ID_PREFIX)


def note_index(messages: Sequence[BaseMessage]) -> int:
    """Where a note can go in ``messages`` so that every tool call stays adjacent to its results.

    Normally the end. If the list ends inside an open tool-call group (an assistant message whose tool calls
    are not all answered yet), the note goes just before that assistant message instead.
    """
    answered: set[str] = set()
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, ToolMessage):
            answered.add(message.tool_call_id)
        elif isinstance(message, AIMessage):
            pending = [c for c in message.tool_calls if c["id"] not in answered]
            return i if pending else len(messages)
        else:
            return len(messages)
    return len(messages)


def insert_note(messages: Sequence[M], note: M) -> list[M]:
    """A copy of ``messages`` with ``note`` placed at :func:`note_index`."""
    at = note_index(messages)
    return [*messages[:at], note, *messages[at:]]
