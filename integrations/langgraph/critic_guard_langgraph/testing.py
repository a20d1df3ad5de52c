"""A scripted chat model for tests, demos and benchmarks: real LangChain plumbing, no network, no state.

:class:`ScriptedChatModel` is a genuine ``BaseChatModel``: ``create_agent`` binds tools to it,
``with_structured_output`` works on it (langchain-core's default implementation binds the schema as a tool and
parses the tool call), it runs through callbacks and tracing like a provider model, and it streams (word by word,
then one chunk per tool call) when LangChain asks it to (``stream_mode="messages"``, ``astream_events``). Its reply
is a pure function of the input messages:

* the *policy* receives the messages and a ``random.Random`` seeded from a digest of those messages (plus the
  model's ``seed``). A stochastic policy therefore gives the same answer to the same prefix, whichever branch
  or process asks, which is what checkpoint forks need: two branches that share a prefix share its
  continuation distribution, and a re-run reproduces a run exactly;
* the reply's message id and any missing tool-call ids are derived from the same digest, so they are
  deterministic too (equal runs compare equal, ids included).

The digest ignores message ids (user messages get random ids from ``add_messages``) and keeps everything else
the neutral form keeps (see :mod:`critic_guard_langgraph.messages`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCall, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from critic_guard_langgraph.messages import to_neutral

__all__ = ["ChatPolicy", "ScriptedChatModel", "digest_messages", "tool_call"]

ChatPolicy = Callable[[Sequence[BaseMessage], random.Random], AIMessage | str]
"""``policy(messages, rng) -> reply``: the scripted model's behaviour. Use only ``rng`` for randomness."""


def digest_messages(messages: Sequence[BaseMessage]) -> str:
    """A stable hex digest of a message list, ignoring message ids."""
    neutral = [{k: v for k, v in m.items() if k != "id"} for m in to_neutral(messages)]
    payload = json.dumps(neutral, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def tool_call(name: str, /, **args: Any) -> AIMessage:
    """An assistant message calling one tool; the scripted model fills in a deterministic call id."""
    return AIMessage(content="", tool_calls=[ToolCall(name=name, args=args, id=None, type="tool_call")])


class ScriptedChatModel(BaseChatModel):
    """A chat model whose reply is ``policy(messages, rng)``, with ``rng`` seeded from the messages.

    ``ScriptedChatModel(policy=fn)`` for full control, or :meth:`from_script` for a fixed list of replies.
    """

    policy: ChatPolicy
    """Maps the input messages (system prompt included) and a seeded RNG to the reply."""
    seed: int = 0
    """Mixed into the RNG seed and the ids: two models with different seeds are two independent "samples"."""
    model_name: str = "scripted"

    @classmethod
    def from_script(cls, replies: Sequence[AIMessage | str], **kwargs: Any) -> ScriptedChatModel:
        """Reply ``replies[k]`` where ``k`` is the number of assistant messages already in the input.

        So the first call answers ``replies[0]``, the call after one assistant turn ``replies[1]``, and so on.
        A retry after a rollback sees the same ``k`` and (being deterministic) gives the same reply again.
        """
        script = tuple(replies)
        if not script:
            raise ValueError("from_script needs at least one reply")

        def scripted(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
            k = sum(isinstance(m, AIMessage) for m in messages)
            if k >= len(script):
                raise IndexError(f"the script has {len(script)} replies; this call asks for reply {k}")
            return script[k]

        return cls(policy=scripted, **kwargs)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "seed": self.seed}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the way provider integrations do; the policy decides which tools to call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def reply(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """The reply to ``messages`` (what ``invoke`` returns, without callbacks)."""
        key = hashlib.sha256(f"{self.seed}:{digest_messages(messages)}".encode()).hexdigest()
        out = self.policy(messages, random.Random(key))
        if isinstance(out, str):
            out = AIMessage(content=out)
        elif not isinstance(out, AIMessage):
            raise TypeError(f"the scripted policy must return an AIMessage or a str, got {type(out).__name__}")
        calls = [{**call, "id": call["id"] or f"call-{key[:12]}-{i}"} for i, call in enumerate(out.tool_calls)]
        return out.model_copy(
            update={
                "id": out.id or f"scripted-{key[:24]}",
                "tool_calls": calls,
                "response_metadata": {**out.response_metadata, "model_name": self.model_name},
            }
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.reply(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.reply(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from _chunks(self.reply(messages))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in _chunks(self.reply(messages)):
            yield chunk


def _chunks(reply: AIMessage) -> Iterator[ChatGenerationChunk]:
    """``reply`` as a provider streams it: its text word by word, then one chunk per tool call, all under the
    reply's id; the last chunk carries the response metadata. The chunks add up to ``reply`` again."""
    calls = [
        ToolCallChunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=i)
        for i, call in enumerate(reply.tool_calls)
    ]
    parts: list[dict[str, Any]] = [{"content": word} for word in re.findall(r"\S+\s*|\s+", reply.text)]
    parts += [{"content": "", "tool_call_chunks": [call]} for call in calls]
    parts = parts or [{"content": ""}]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        extra: dict[str, Any] = {"chunk_position": "last", "response_metadata": reply.response_metadata} if last else {}
        yield ChatGenerationChunk(message=AIMessageChunk(id=reply.id, **part, **extra))
