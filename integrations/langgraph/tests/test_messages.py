"""Conversion LangChain <-> neutral messages, and note placement."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

from critic_guard_langgraph.messages import (
    NOTE_ID_PREFIX,
    NeutralHistory,
    from_neutral,
    insert_note,
    is_guard_note,
    make_note,
    note_index,
    to_neutral,
)

TRAJECTORY = [
    SystemMessage("be brief", id="s0"),
    HumanMessage("what is 2+3?", id="h0"),
    AIMessage(
        "",
        id="a0",
        tool_calls=[
            {"name": "add", "args": {"a": 2, "b": 3}, "id": "c1", "type": "tool_call"},
            {"name": "log", "args": {}, "id": "c2", "type": "tool_call"},
        ],
    ),
    ToolMessage("5", tool_call_id="c1", name="add", id="t1"),
    ToolMessage("ok", tool_call_id="c2", name="log", id="t2"),
    AIMessage("5", id="a1", name="solver"),
]

NEUTRAL = [
    {"role": "system", "content": "be brief", "id": "s0"},
    {"role": "user", "content": "what is 2+3?", "id": "h0"},
    {
        "role": "assistant",
        "content": "",
        "id": "a0",
        "tool_calls": [
            {"id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}},
            {"id": "c2", "name": "log", "arguments": {}},
        ],
    },
    {"role": "tool", "content": "5", "tool_call_id": "c1", "name": "add", "id": "t1"},
    {"role": "tool", "content": "ok", "tool_call_id": "c2", "name": "log", "id": "t2"},
    {"role": "assistant", "content": "5", "id": "a1", "name": "solver"},
]


def test_to_neutral_gives_openai_style_dicts() -> None:
    assert to_neutral(TRAJECTORY) == NEUTRAL
    assert to_neutral(TRAJECTORY[1]) == NEUTRAL[1]


def test_from_neutral_inverts_to_neutral() -> None:
    back = from_neutral(NEUTRAL)
    assert back == TRAJECTORY
    assert [type(m) for m in back] == [type(m) for m in TRAJECTORY]


def test_content_blocks_keep_their_text_only() -> None:
    message = HumanMessage(content=[{"type": "text", "text": "look: "}, {"type": "image", "url": "x"}, "done"])
    assert to_neutral(message) == {"role": "user", "content": "look: done"}


def test_chat_message_roles_map_and_unknown_ones_fail() -> None:
    assert to_neutral(ChatMessage(role="developer", content="x")) == {"role": "system", "content": "x"}
    with pytest.raises(ValueError, match="'critic'"):
        to_neutral(ChatMessage(role="critic", content="x"))
    with pytest.raises(TypeError, match="RemoveMessage"):
        to_neutral(RemoveMessage(id="x"))


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({"role": "robot", "content": "x"}, ValueError, "robot"),
        ({"role": "user", "content": 3}, TypeError, "content"),
        ({"role": "tool", "content": "x"}, ValueError, "tool_call_id"),
        ({"role": "assistant", "tool_calls": [{"name": "f", "arguments": "{}"}]}, TypeError, "arguments"),
        ({"role": "assistant", "tool_calls": [{"arguments": {}}]}, ValueError, "name"),
    ],
)
def test_from_neutral_rejects_malformed_messages(bad: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        from_neutral(bad)


def test_openai_null_content_on_tool_calling_assistant_is_accepted() -> None:
    message = from_neutral({"role": "assistant", "content": None, "tool_calls": [{"id": "c", "name": "f"}]})
    assert isinstance(message, AIMessage)
    assert message.content == ""
    assert message.tool_calls == [{"name": "f", "args": {}, "id": "c", "type": "tool_call"}]


def test_sequences_only() -> None:
    with pytest.raises(TypeError):
        to_neutral("hello")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        from_neutral("hello")  # type: ignore[call-overload]


_text = st.text(max_size=20)
_ids = st.text(alphabet="abcdef0123456789", min_size=1, max_size=8)
_args = st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | _text, max_size=3)
_call = st.fixed_dictionaries({"id": _ids, "name": st.text(min_size=1, max_size=8), "arguments": _args})
_neutral = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]), "content": _text, "id": _ids}),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": _text,
            "id": _ids,
            "tool_calls": st.lists(_call, min_size=1),
        }
    ),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": _text, "id": _ids}),
    st.fixed_dictionaries({"role": st.just("tool"), "content": _text, "tool_call_id": _ids, "name": _text}),
)


@given(st.lists(_neutral, max_size=6))
def test_round_trip_neutral_langchain_neutral(messages: list[dict[str, Any]]) -> None:
    assert to_neutral(from_neutral(messages)) == messages


def test_guard_notes_are_recognisable() -> None:
    note = make_note("reconsider", "run-1-2")
    assert note.id == f"{NOTE_ID_PREFIX}run-1-2"
    assert is_guard_note(note)
    assert not is_guard_note(HumanMessage("reconsider", id="user-1"))


def test_note_goes_after_complete_tool_groups() -> None:
    assert note_index(TRAJECTORY) == len(TRAJECTORY)
    assert note_index(TRAJECTORY[:5]) == 5  # both tool calls answered
    assert note_index(TRAJECTORY[:2]) == 2
    assert note_index([]) == 0


def test_note_never_splits_an_open_tool_call_group() -> None:
    assert note_index(TRAJECTORY[:4]) == 2  # c2 unanswered: the note goes before the assistant message
    assert note_index(TRAJECTORY[:3]) == 2
    note = make_note("careful", "k")
    placed = insert_note(TRAJECTORY[:4], note)
    assert placed == [*TRAJECTORY[:2], note, *TRAJECTORY[2:4]]


def test_neutral_history_converts_only_new_messages_and_equals_to_neutral() -> None:
    history = NeutralHistory(max_runs=2)
    task = HumanMessage("add 1 and 2", id="h")
    call = AIMessage("", tool_calls=[{"id": "c1", "name": "add", "args": {"a": 1, "b": 2}}], id="a1")
    result = ToolMessage("3", tool_call_id="c1", id="t1")
    first = history.convert("run", [task, call])
    assert list(first) == to_neutral([task, call])
    second = history.convert("run", [task, call, result, AIMessage("3", id="a2")])
    assert list(second) == to_neutral([task, call, result, AIMessage("3", id="a2")])
    assert second[0] is first[0] and second[1] is first[1]  # reused, not converted again
    rolled_back = history.convert("run", [task, call, result])  # a ROLLBACK removed the last message
    assert rolled_back[:3] == second[:3] and rolled_back[2] is second[2]
    replaced = AIMessage("", tool_calls=[{"id": "c1", "name": "add", "args": {"a": 1, "b": 5}}], id="a1")
    changed = history.convert("run", [task, replaced, result])  # same id, another object: converted again
    assert changed[1]["tool_calls"][0]["arguments"] == {"a": 1, "b": 5} and changed[2] is not rolled_back[2]


def test_neutral_history_keeps_at_most_max_runs() -> None:
    history = NeutralHistory(max_runs=2)
    message = HumanMessage("hi", id="h")
    kept = history.convert("a", [message])
    history.convert("b", [message])
    history.convert("c", [message])  # pushes out "a", the least recently used
    assert history.convert("a", [message])[0] is not kept[0]
    history.forget("c")
    assert "c" not in history._runs


def test_a_history_view_converts_only_what_the_critic_reads() -> None:
    history = NeutralHistory()
    task = HumanMessage("add 1 and 2", id="h")
    call = AIMessage("", tool_calls=[{"id": "c1", "name": "add", "args": {"a": 1, "b": 2}}], id="a1")
    view = history.view("run", [task, call])
    assert len(view) == 2 and "run" not in history._runs  # the length is free
    assert view[-1] == to_neutral(call) and "run" not in history._runs  # one item: converted on its own
    assert view[:-1] == (to_neutral(task),) and "run" in history._runs  # a slice converts the history (cached)
    assert list(view) == to_neutral([task, call]) and view == to_neutral([task, call])
    assert view[-1] is history.convert("run", [task, call])[-1]  # now the items come from the cache
    assert view != to_neutral([task]) and view != "not a history"
    assert repr(view) == repr(tuple(to_neutral([task, call])))
    with pytest.raises(TypeError):
        hash(view)
