"""The scripted chat model: a pure function of its input, usable wherever LangChain expects a chat model."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from critic_guard_langgraph.testing import ScriptedChatModel, digest_messages, tool_call


def coin(messages: Sequence[BaseMessage], rng: random.Random) -> str:
    return f"{rng.random():.12f}"


def test_reply_depends_only_on_the_messages_not_on_ids_or_history() -> None:
    model = ScriptedChatModel(policy=coin)
    first = model.invoke([HumanMessage("hi", id="u1")])
    model.invoke([HumanMessage("something else")])  # no hidden state between calls
    again = model.invoke([HumanMessage("hi", id="u2")])
    assert first == again
    assert first.id is not None and first.id.startswith("scripted-")
    assert model.invoke([HumanMessage("hi!")]).content != first.content


def test_seed_gives_an_independent_sample() -> None:
    messages = [HumanMessage("hi")]
    a, b = ScriptedChatModel(policy=coin, seed=1), ScriptedChatModel(policy=coin, seed=2)
    assert a.invoke(messages).content != b.invoke(messages).content
    assert a.invoke(messages).id != b.invoke(messages).id


def test_digest_ignores_ids_but_not_content_roles_or_tool_calls() -> None:
    base = [SystemMessage("s"), HumanMessage("q", id="x")]
    assert digest_messages(base) == digest_messages([SystemMessage("s", id="y"), HumanMessage("q")])
    assert digest_messages(base) != digest_messages([HumanMessage("s"), HumanMessage("q")])
    assert digest_messages([tool_call("f", a=1)]) != digest_messages([tool_call("f", a=2)])


def test_script_form_and_deterministic_tool_call_ids() -> None:
    model = ScriptedChatModel.from_script([tool_call("add", a=1, b=2), "3"])
    first = model.invoke([HumanMessage("1+2?")])
    assert first.tool_calls[0]["name"] == "add"
    assert first.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert first.tool_calls[0]["id"] == model.invoke([HumanMessage("1+2?")]).tool_calls[0]["id"]
    assert model.invoke([HumanMessage("1+2?"), first]).content == "3"
    with pytest.raises(IndexError, match="2 replies"):
        model.invoke([HumanMessage("1+2?"), first, AIMessage("3")])
    with pytest.raises(ValueError, match="at least one"):
        ScriptedChatModel.from_script([])


def test_policy_output_is_checked() -> None:
    model = ScriptedChatModel(policy=lambda messages, rng: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="int"):
        model.invoke("hi")


async def test_async_matches_sync() -> None:
    model = ScriptedChatModel(policy=coin)
    assert await model.ainvoke([HumanMessage("hi")]) == model.invoke([HumanMessage("hi")])


def test_bind_tools_passes_tool_schemas_to_the_model() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    seen: list[object] = []

    class Spy(ScriptedChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(kwargs.get("tools"))
            return super()._generate(messages, stop, run_manager, **kwargs)

    bound = Spy(policy=lambda messages, rng: "ok").bind_tools([add])
    assert bound.invoke("hi").content == "ok"
    assert seen == [
        [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": "Add two integers.",
                    "parameters": {
                        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"],
                        "type": "object",
                    },
                },
            }
        ]
    ]


class Answer(BaseModel):
    """An answer with a confidence."""

    value: int
    confidence: float = Field(ge=0, le=1)


async def test_with_structured_output_works_through_bind_tools() -> None:
    def answer(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
        return tool_call("Answer", value=len(messages[-1].text), confidence=0.5)

    structured = ScriptedChatModel(policy=answer).with_structured_output(Answer)
    assert structured.invoke("four") == Answer(value=4, confidence=0.5)
    assert await structured.ainvoke("sixsix") == Answer(value=6, confidence=0.5)
