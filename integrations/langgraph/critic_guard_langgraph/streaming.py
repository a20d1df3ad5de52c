"""What a stream consumer sees of the guard, and how a client tells it apart (docs: integrations/langgraph/README.md,
"Streaming").

LangGraph's ``stream_mode="messages"`` emits a chat model's tokens as the model writes them, from LangChain's
callbacks, before the model node returns; and, at the end of the node, every message of the node's output not yet
emitted. The guard judges a proposal only once the model has finished it, so:

* a proposal the guard withdraws (ROLLBACK) has already streamed. The guard then writes a custom stream event
  (``stream_mode="custom"``) naming it, :func:`withdrawn_event`, so that a client can take it back off the screen;
  the same event goes to LangChain's callbacks as a custom event named ``critic_guard`` (``on_custom_event`` in
  ``astream_events``, and in tracers such as LangSmith) for consumers of the chat model's callback events;
* a guard note (the feedback the retry sees) is a user-role message of the node's output: it streams like any
  message, recognisable by its id (:func:`~critic_guard_langgraph.messages.is_guard_note`, the prefix
  :data:`~critic_guard_langgraph.messages.NOTE_ID_PREFIX`);
* with ``CriticGuardMiddleware(..., stream_proposals="judged")``, where the guard may withdraw a proposal, its model
  calls carry LangGraph's ``nostream`` tag instead: a proposal is not streamed while it is written, and the one the
  guard accepts streams whole at the end of the model node, so a withdrawn proposal never reaches the messages stream
  at all (no tokens either).

:class:`AcceptedMessages` is the documented client-side filter: fed every ``(mode, chunk)`` of
``stream(..., stream_mode=["messages", "custom"])``, it keeps the messages the agent's state keeps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.constants import TAG_NOSTREAM

from critic_guard_langgraph._runs import logger
from critic_guard_langgraph.messages import is_guard_note

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

__all__ = [
    "EVENT_KEY",
    "HELD_TAGS",
    "WITHDRAWN",
    "AcceptedMessages",
    "StreamProposals",
    "aannounce",
    "announce",
    "held_from_stream",
    "withdrawn_event",
    "withdrawn_id",
]

EVENT_KEY: Final = "critic_guard"
"""The key of the guard's custom stream events: ``{"critic_guard": <kind>, ...}``."""

WITHDRAWN: Final = "withdrawn"
"""The kind of event the guard writes when it withdraws a proposal that may already have streamed."""

HELD_TAGS: Final = (TAG_NOSTREAM, "critic_guard:held")
"""Tags of the guard's model calls with ``stream_proposals="judged"``: LangGraph's ``nostream`` keeps the call out
of ``stream_mode="messages"``; the second names why, for tracers and ``astream_events`` consumers."""

StreamProposals = Literal["live", "judged"]
"""How proposals reach ``stream_mode="messages"``: ``"live"`` token by token as the model writes them (a withdrawn
one is retracted by a custom event), ``"judged"`` whole, once the guard has accepted them."""


def withdrawn_event(message_id: str | None, *, run_id: str | None, step: int) -> dict[str, Any]:
    """The custom stream event naming a withdrawn proposal (the id its streamed chunks carry)."""
    return {EVENT_KEY: WITHDRAWN, "message_id": message_id, "run_id": run_id, "step": step}


def announce(runtime: Runtime[Any], events: list[dict[str, Any]]) -> None:
    """Write (and empty) ``events`` to the custom stream and to LangChain's callbacks.

    LangChain logs a failing callback handler itself; dispatching raises only outside a run (no parent run id),
    which is logged here and never raised into the agent."""
    while events:
        event = events.pop(0)
        runtime.stream_writer(event)
        try:
            dispatch_custom_event(EVENT_KEY, event)
        except Exception:
            logger.warning("critic-guard: could not pass %r to LangChain's callbacks", event, exc_info=True)


async def aannounce(runtime: Runtime[Any], events: list[dict[str, Any]]) -> None:
    """Async :func:`announce` (async callback handlers are awaited)."""
    while events:
        event = events.pop(0)
        runtime.stream_writer(event)
        try:
            await adispatch_custom_event(EVENT_KEY, event)
        except Exception:
            logger.warning("critic-guard: could not pass %r to LangChain's callbacks", event, exc_info=True)


def withdrawn_id(chunk: object) -> str | None:
    """The id of the withdrawn message if ``chunk`` (a ``stream_mode="custom"`` chunk) is the guard's event."""
    if isinstance(chunk, Mapping) and chunk.get(EVENT_KEY) == WITHDRAWN:
        message_id = chunk.get("message_id")
        return message_id if isinstance(message_id, str) else None
    return None


class AcceptedMessages:
    """A client-side view of a ``stream_mode=["messages", "custom"]`` stream: the messages a user should see.

    Chunks of one message (same id) are added up; guard notes are skipped; a message named by the guard's withdrawn
    event is dropped (a UI removes what it showed of it). :meth:`feed` returns the id it dropped, if any.
    """

    def __init__(self) -> None:
        self.messages: dict[str, BaseMessage] = {}
        self.withdrawn: list[str] = []

    def feed(self, mode: str, chunk: Any) -> str | None:
        """Take one ``(mode, chunk)`` item of the stream."""
        if mode == "custom":
            gone = withdrawn_id(chunk)
            if gone is not None:
                self.withdrawn.append(gone)
                self.messages.pop(gone, None)
            return gone
        if mode != "messages":
            return None
        message, _metadata = chunk
        if is_guard_note(message) or message.id is None:
            return None
        seen = self.messages.get(message.id)
        if isinstance(seen, BaseMessageChunk) and isinstance(message, BaseMessageChunk):
            self.messages[message.id] = seen + message
        else:
            self.messages[message.id] = message
        return None

    def final(self) -> list[BaseMessage]:
        """The messages kept, in stream order, streamed chunks joined into whole messages."""
        return [message_chunk_to_message(m) for m in self.messages.values()]


@contextmanager
def held_from_stream(hold: bool) -> Iterator[None]:
    """Within the block, chat model calls carry :data:`HELD_TAGS` (when ``hold``).

    Why a context variable: ``create_agent`` invokes the model without a config, so LangChain takes the model node's
    config from ``var_child_runnable_config``; tags added there reach the model's callbacks, and LangGraph's messages
    stream skips a run tagged ``nostream``.
    """
    if not hold:
        yield
        return
    config = var_child_runnable_config.get() or {}
    token = var_child_runnable_config.set({**config, "tags": [*config.get("tags", ()), *HELD_TAGS]})
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)
