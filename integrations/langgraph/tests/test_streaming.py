"""What ``stream(stream_mode=["messages", "custom"])`` shows of a guarded agent (integrations/langgraph/README.md,
"Streaming"): a real ``create_agent`` graph in mode ``on`` with ROLLBACK, the scripted model streaming word by word,
a real SQLite store.

Two agents. *answer*: no tools; the model's first answer is wrong ("44") and streams token by token; the critic
flags it, and the retry, seeing the guard's note, answers 42. *calc*: the calculator of ``calc_agent``; the withdrawn
proposal is a tool call at step 2.

The README's client block is executed as written: a client that follows it ends with exactly the messages the
agent's state keeps (the input aside), never the withdrawn proposal nor the note.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from calc_agent import (
    SHADOW_TOOLS,
    GuardFactory,
    build_agent,
    calc_model,
    comparable,
    oracle_critic,
    task_input,
    thread,
)
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, message_chunk_to_message
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime
from pydantic import BaseModel

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware, is_guard_note
from critic_guard_langgraph.streaming import (
    AcceptedMessages,
    StreamProposals,
    aannounce,
    announce,
    withdrawn_event,
    withdrawn_id,
)
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

README = Path(__file__).parents[1] / "README.md"
WRONG, RIGHT = "The answer is 44, I think.", "The answer is 42."


def readme_client_block() -> str:
    """The python block of the README's "Streaming" section."""
    section = README.read_text().split("## Streaming", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return str(block)


def answers(messages: Sequence[BaseMessage], rng: random.Random) -> str:
    return RIGHT if any(is_guard_note(m) for m in messages) else WRONG


class Flagging:
    """Wraps a critic and remembers the ids of the proposals it flags."""

    def __init__(self, critic: Any) -> None:
        self.critic = critic
        self.flagged: list[str] = []

    def __call__(self, ctx: StepContext) -> Verdict:
        verdict: Verdict = self.critic(ctx)
        if verdict.p_fail >= 0.5:
            self.flagged.append(ctx.proposed["id"])
        return verdict


def wrong_answers(ctx: StepContext) -> Verdict:
    return Verdict(0.9 if "44" in str(ctx.proposed.get("content")) else 0.1, rationale="44 is wrong")


def scenario(
    name: str, make_guard: GuardFactory, stream_proposals: StreamProposals
) -> tuple[Any, CriticGuard, Flagging]:
    saver = InMemorySaver()
    if name == "answer":
        critic = Flagging(wrong_answers)
        guard = make_guard(critic, mode="on", policy=Policy(action="rollback", min_step=0))
        middleware = CriticGuardMiddleware(guard, stream_proposals=stream_proposals)
        agent = create_agent(ScriptedChatModel(policy=answers), [], middleware=[middleware], checkpointer=saver)
    else:
        critic = Flagging(oracle_critic)
        guard = make_guard(critic, mode="on", policy=Policy(action="rollback"))
        middleware = CriticGuardMiddleware(guard, stream_proposals=stream_proposals)
        agent = build_agent(calc_model(bad_step=2)[0], [middleware], saver)
    return agent, guard, critic


async def collect(agent: Any, asynchronous: bool) -> list[tuple[str, Any]]:
    modes = ["messages", "custom"]
    if asynchronous:
        return [item async for item in agent.astream(task_input(), thread(), stream_mode=modes)]
    # the sync API from a worker thread, as a service calls it (never on the event loop: conftest's blockbuster)
    return await asyncio.to_thread(lambda: list(agent.stream(task_input(), thread(), stream_mode=modes)))


def accepted(agent: Any) -> list[BaseMessage]:
    """What the agent's state keeps of the run (its input aside), notes excluded: what a user should see."""
    messages = agent.get_state(thread()).values["messages"]
    assert messages[0].id == "task"
    return [m for m in messages[1:] if not is_guard_note(m)]


def run_readme_client(agent: Any, items: list[tuple[str, Any]]) -> dict[str, str]:
    """Execute the README's block with ``agent.stream`` replaying ``items``; return its ``shown``."""

    class Replay:
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            assert kwargs["stream_mode"] == ["messages", "custom"]
            return iter(items)

    namespace: dict[str, Any] = {"agent": Replay(), "inputs": task_input(), "config": thread()}
    exec(readme_client_block(), namespace)
    shown: dict[str, str] = namespace["shown"]
    return shown


@pytest.mark.parametrize("asynchronous", [False, True], ids=["stream", "astream"])
@pytest.mark.parametrize("name", ["answer", "calc"])
async def test_a_client_following_the_readme_sees_exactly_the_accepted_messages(
    name: str, asynchronous: bool, make_guard: GuardFactory
) -> None:
    agent, guard, critic = scenario(name, make_guard, "live")
    items = await collect(agent, asynchronous)
    [withdrawn] = critic.flagged
    streamed = [chunk[0] for mode, chunk in items if mode == "messages"]
    # what the raw stream shows: the withdrawn proposal streamed live, and the note streamed as a user message
    assert any(isinstance(m, AIMessageChunk) and m.id == withdrawn for m in streamed)
    if name == "answer":  # word by word, before the critic saw the whole answer
        assert [m.text for m in streamed if m.id == withdrawn] == ["The ", "answer ", "is ", "44, ", "I ", "think."]
    assert sum(isinstance(m, HumanMessage) and is_guard_note(m) for m in streamed) == 1
    # the guard's custom event names the withdrawn id, after its chunks and before the retry's
    assert guard.store is not None
    [run] = await asyncio.to_thread(guard.store.runs, guard.guard_key)
    step = 0 if name == "answer" else 2
    events = [chunk for mode, chunk in items if mode == "custom"]
    assert events == [withdrawn_event(withdrawn, run_id=run.run_id, step=step)]
    assert withdrawn_id(events[0]) == withdrawn
    at = items.index(("custom", events[0]))
    assert all(chunk[0].id != withdrawn for mode, chunk in items[at:] if mode == "messages")
    # the README's client ends with the accepted messages, in order, with their text
    keep = accepted(agent)
    assert withdrawn not in {m.id for m in keep}
    shown = run_readme_client(agent, items)
    assert list(shown) == [m.id for m in keep]
    assert shown == {m.id: m.text for m in keep}
    if name == "answer":
        assert list(shown.values()) == [RIGHT]
    # AcceptedMessages joins the chunks back into the very messages the state keeps
    view = AcceptedMessages()
    dropped = [view.feed(mode, chunk) for mode, chunk in items]
    assert [d for d in dropped if d is not None] == [withdrawn] == view.withdrawn
    assert comparable(view.final()) == comparable(keep)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["stream", "astream"])
@pytest.mark.parametrize("name", ["answer", "calc"])
async def test_judged_proposals_never_stream_a_withdrawn_one(
    name: str, asynchronous: bool, make_guard: GuardFactory
) -> None:
    agent, _, critic = scenario(name, make_guard, "judged")
    items = await collect(agent, asynchronous)
    [withdrawn] = critic.flagged
    streamed = [chunk for mode, chunk in items if mode == "messages"]
    assert all(m.id != withdrawn for m, _ in streamed)
    # the model's calls were held (nostream): the accepted proposals arrive whole from the model node, no tokens
    model_messages = [m for m, meta in streamed if meta["langgraph_node"] == "model"]
    assert model_messages and not any(isinstance(m, AIMessageChunk) for m in model_messages)
    [event] = [chunk for mode, chunk in items if mode == "custom"]
    assert withdrawn_id(event) == withdrawn  # still announced
    keep = accepted(agent)
    assert run_readme_client(agent, items) == {m.id: m.text for m in keep}
    view = AcceptedMessages()
    for mode, chunk in items:
        view.feed(mode, chunk)
    assert comparable(view.final()) == comparable(keep)


class Answer(BaseModel):
    value: int


def structured_answers(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
    return tool_call("Answer", value=42 if any(is_guard_note(m) for m in messages) else 41)


def flags_41(ctx: StepContext) -> Verdict:
    calls = ctx.proposed.get("tool_calls") or []
    return Verdict(0.9 if calls and calls[0]["arguments"] == {"value": 41} else 0.1)


async def test_a_withdrawn_structured_answer_streams_only_its_model_message(make_guard: GuardFactory) -> None:
    # With ToolStrategy a response is the structured-output call plus its tool message; only the call streams while
    # it is written, and the tool message of a withdrawn response never reaches the stream.
    critic = Flagging(flags_41)
    guard = make_guard(critic, mode="on", policy=Policy(min_step=0))
    agent = create_agent(
        ScriptedChatModel(policy=structured_answers),
        [],
        middleware=[CriticGuardMiddleware(guard)],
        response_format=ToolStrategy(Answer),
        checkpointer=InMemorySaver(),
    )
    items = [item async for item in agent.astream(task_input(), thread(), stream_mode=["messages", "custom"])]
    [withdrawn] = critic.flagged
    assert agent.get_state(thread()).values["structured_response"] == Answer(value=42)
    view = AcceptedMessages()
    for mode, chunk in items:
        view.feed(mode, chunk)
    assert view.withdrawn == [withdrawn]
    keep = accepted(agent)
    assert [type(m).__name__ for m in keep] == ["AIMessage", "ToolMessage"]
    assert comparable(view.final()) == comparable(keep)
    assert run_readme_client(agent, items) == {m.id: m.text for m in keep}


def test_accepted_messages_reads_v2_stream_parts(make_guard: GuardFactory) -> None:
    agent, _, critic = scenario("calc", make_guard, "live")
    view = AcceptedMessages()
    for part in agent.stream(task_input(), thread(), stream_mode=["messages", "custom"], version="v2"):
        view.feed(part["type"], part["data"])
    assert view.withdrawn == critic.flagged and len(critic.flagged) == 1
    assert comparable(view.final()) == comparable(accepted(agent))


class CustomEvents(BaseCallbackHandler):
    """Records LangChain custom events (what a tracer receives)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))


@pytest.mark.parametrize("name", ["answer", "calc"])
def test_callback_handlers_receive_the_withdrawal_as_a_custom_event(name: str, make_guard: GuardFactory) -> None:
    agent, guard, critic = scenario(name, make_guard, "live")
    handler = CustomEvents()
    agent.invoke(task_input(), {**thread(), "callbacks": [handler]})
    [withdrawn] = critic.flagged
    assert guard.store is not None
    [run] = guard.store.runs(guard.guard_key)
    assert handler.events == [
        ("critic_guard", withdrawn_event(withdrawn, run_id=run.run_id, step=0 if name == "answer" else 2))
    ]


@pytest.mark.parametrize("name", ["answer", "calc"])
async def test_astream_events_shows_the_withdrawal_after_the_withdrawn_tokens(
    name: str, make_guard: GuardFactory
) -> None:
    agent, _, critic = scenario(name, make_guard, "live")
    events = [e async for e in agent.astream_events(task_input(), thread(), version="v2")]
    [withdrawn] = critic.flagged
    streamed = [
        i for i, e in enumerate(events) if e["event"] == "on_chat_model_stream" and e["data"]["chunk"].id == withdrawn
    ]
    [custom] = [i for i, e in enumerate(events) if e["event"] == "on_custom_event"]
    assert events[custom]["name"] == "critic_guard" and withdrawn_id(events[custom]["data"]) == withdrawn
    assert streamed and max(streamed) < custom


@pytest.mark.parametrize("asynchronous", [False, True], ids=["stream", "astream"])
async def test_a_pilot_streams_nothing_of_its_shadow_branches(asynchronous: bool, make_guard: GuardFactory) -> None:
    # production serves control; the treatment branch forked at step 2 rolls the step back (a note, an event) and
    # runs on while the client's stream is still open: none of it may reach the client
    guard = make_guard(oracle_critic, mode="pilot", policy=Policy(min_step=0, action="rollback"))
    model, calls = calc_model(bad_step=2)
    middleware = CriticGuardMiddleware(
        guard, judge=lambda task, state: state["messages"][-1].text == "42", shadow_tools=SHADOW_TOOLS
    )
    agent = build_agent(model, [middleware], InMemorySaver())
    items: list[tuple[str, Any]] = []
    modes = ["messages", "custom"]
    if asynchronous:
        async for item in agent.astream(task_input(), thread(), stream_mode=modes):
            items.append(item)
            await middleware.drain()  # the verdict, then the branch (a task) ends while the stream is open
        await middleware.drain()  # the production run's end (after its last verdict)
    else:

        def stream() -> None:  # in a worker thread, as a service calls the sync API (never on the event loop)
            for item in agent.stream(task_input(), thread(), stream_mode=modes):
                items.append(item)
                assert middleware.wait(30)  # the verdict, then the branch (a pool thread) ends while the stream is open
            assert middleware.wait(30)  # the production run's end (after its last verdict)

        await asyncio.to_thread(stream)
    [pair] = await asyncio.to_thread(guard.pairs)
    assert pair.treatment_success is True and pair.control_success is False  # the branch ran, and rolled back
    assert len(calls) == 5 + 3
    assert [mode for mode, _ in items] == ["messages"] * len(items)  # no custom event: the branch's went nowhere
    produced = [m.id for m in agent.get_state(thread()).values["messages"][1:]]
    assert [m.id for m, _ in (chunk for _, chunk in items)] == produced
    assert {meta["thread_id"] for _, meta in (chunk for _, chunk in items)} == {"t1"}


@pytest.mark.parametrize("mode", ["observe", "on-append"])
def test_judged_holds_nothing_where_nothing_can_be_withdrawn(mode: str, make_guard: GuardFactory) -> None:
    action = "append" if mode == "on-append" else "rollback"
    guard = make_guard(wrong_answers, mode=mode.split("-")[0], policy=Policy(action=action, min_step=0))
    middleware = CriticGuardMiddleware(guard, stream_proposals="judged")
    agent = create_agent(ScriptedChatModel(policy=answers), [], middleware=[middleware], checkpointer=InMemorySaver())
    items = list(agent.stream(task_input(), thread(), stream_mode=["messages", "custom"]))
    assert all(kind == "messages" for kind, _ in items)  # nothing withdrawn
    first = [chunk[0].text for _, chunk in items][:6]
    assert first == ["The ", "answer ", "is ", "44, ", "I ", "think."]  # token by token, as unguarded


async def test_announcing_outside_a_run_writes_the_stream_and_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    # LangChain refuses a custom event without a parent run: the stream still gets it, and the caller never sees it
    written: list[Any] = []
    runtime = Runtime(context=None, store=None, stream_writer=written.append)
    event = withdrawn_event("m1", run_id="r", step=2)
    announce(runtime, [event])
    await aannounce(runtime, [event])
    assert written == [event, event]
    assert caplog.text.count("could not pass") == 2


def test_stream_proposals_is_checked(make_guard: GuardFactory) -> None:
    guard = make_guard(wrong_answers, mode="on")
    with pytest.raises(ValueError, match="'live' or 'judged'"):
        CriticGuardMiddleware(guard, stream_proposals="buffered")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [
        "The answer is  42.\nDone.",
        "",
        tool_call("add", a=1, b=2),
        AIMessage("Two calls:", tool_calls=[*tool_call("a", x=1).tool_calls, *tool_call("b", y=[1, 2]).tool_calls]),
    ],
    ids=["text", "empty", "tool-call", "text-and-two-calls"],
)
async def test_the_scripted_model_streams_chunks_that_add_up_to_its_reply(reply: AIMessage | str) -> None:
    model = ScriptedChatModel(policy=lambda messages, rng: reply)
    question = [HumanMessage("q")]
    whole = model.invoke(question)
    for chunks in (list(model.stream(question)), [c async for c in model.astream(question)]):
        assert {c.id for c in chunks} == {whole.id}
        total = chunks[0]
        for chunk in chunks[1:]:
            total = total + chunk
        assert message_chunk_to_message(total) == whole
    if isinstance(reply, str) and reply:
        assert [c.text for c in model.stream(question)] == ["The ", "answer ", "is  ", "42.\n", "Done."]
