"""The tool gate of shadow branches, inside ``CriticGuardMiddleware`` (deny by default), on real pilots.

The README's drop-in (``CriticGuard(..., mode="pilot" | "auto", policy=Policy(tau=0.6, action="rollback"))``,
``CriticGuardMiddleware(guard, judge=...)``) on a real ``create_agent`` graph with a real checkpointer and
a SQLite store; the README's block itself is executed too. The mail agent looks two contacts up (steps 0 and 1),
sends an e-mail (step 2), then answers; the critic flags every ``send_email`` proposal, so each run forks at step 2,
where the treatment branch rolls the e-mail back (three times, its budget) and then proposes it again. ``SENT``
counts every real execution of ``send_email``.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from calc_agent import GuardFactory, thread
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRetryMiddleware, ToolRetryMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import ToolRuntime
from typer.testing import CliRunner

from critic_guard.cli import app
from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.report.data import from_store
from critic_guard.report.status import status_rows
from critic_guard.store.base import PairStatus
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import READ_ONLY, CriticGuardMiddleware, ToolSafety, is_shadow_branch
from critic_guard_langgraph.messages import is_guard_note
from critic_guard_langgraph.shadow import BRANCH_KEY
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

RUNS = 3
STOPPED = "tool 'send_email': undeclared side effects"

SENT: list[str] = []  # every real execution of send_email (production or branch)
LOOKED_UP: list[bool] = []  # every real execution of lookup: whether it ran in a shadow branch
NOTIFIED: list[str] = []  # every real execution of notify
_lock = threading.Lock()


@tool
def lookup(name: str, runtime: ToolRuntime) -> str:
    """Look up a contact's address."""
    with _lock:
        LOOKED_UP.append(is_shadow_branch(runtime))
    return f"{name}@example.com"


@tool
def send_email(to: str) -> str:
    """Send an e-mail (a side effect)."""
    with _lock:
        SENT.append(to)
    return f"sent to {to}"


@tool
def notify(text: str) -> str:
    """Notify someone (a side effect, invoked by a middleware hook rather than by the model)."""
    with _lock:
        NOTIFIED.append(text)
    return "notified"


def mail_policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
    """Steps: look up ada, look up bob, e-mail ada (again after a guard note), answer."""
    k = sum(isinstance(m, AIMessage) and bool(m.tool_calls) for m in messages)
    if k == 0:
        return tool_call("lookup", name="ada")
    if k == 1:
        return tool_call("lookup", name="bob")
    if k == 2:
        return send_ada()
    return f"done: {messages[-1].text}"


def send_ada() -> AIMessage:
    return tool_call("send_email", to="ada@example.com")


def mail_critic(ctx: StepContext) -> Verdict:
    """Flags (0.9) every proposed e-mail, nothing else (0.1)."""
    calls = ctx.proposed.get("tool_calls") or []
    return Verdict(0.9 if any(c["name"] == "send_email" for c in calls) else 0.1)


def is_resolved(state: Any) -> bool:
    return str(state["messages"][-1].text).startswith("done")


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    for seen in (SENT, LOOKED_UP, NOTIFIED):
        seen.clear()
    yield
    for seen in (SENT, LOOKED_UP, NOTIFIED):
        seen.clear()


def readme_guard(make_guard: GuardFactory, mode: str = "pilot") -> CriticGuard:
    """The README's drop-in guard (tau 0.6, rollback, the paper's defaults otherwise)."""
    return make_guard(mail_critic, agent_name="support-bot", mode=mode, policy=Policy(tau=0.6, action="rollback"))


def readme_agent(
    guard: CriticGuard, saver: Any, *, before: Sequence[Any] = (), after: Sequence[Any] = (), **options: Any
) -> tuple[Any, CriticGuardMiddleware[Any, Any]]:
    """The README's drop-in, ``CriticGuardMiddleware(guard, judge=...)``, with no tool declared unless
    ``shadow_tools`` is given (in ``options``); other middlewares before and after it."""
    middleware: CriticGuardMiddleware[Any, Any] = CriticGuardMiddleware(
        guard, judge=lambda task, state: is_resolved(state), **options
    )
    agent = create_agent(
        ScriptedChatModel(policy=mail_policy),
        [lookup, send_email],
        middleware=[*before, middleware, *after],
        checkpointer=saver,
    )
    return agent, middleware


def run_production(agent: Any, middleware: CriticGuardMiddleware[Any, Any], runs: int = RUNS) -> None:
    for i in range(runs):
        out = agent.invoke({"messages": [HumanMessage("mail ada")]}, thread(f"prod-{i}"))
        assert out["messages"][-1].text == "done: sent to ada@example.com"
    assert middleware.wait(30)


def branch_messages(agent: Any, guard: CriticGuard) -> list[list[BaseMessage]]:
    """The final messages of every shadow branch: the thread named after a production thread and the branch run."""
    out = []
    for pair in guard.pairs():
        branch = pair.treatment_run_id if pair.control_run_id == pair.pair_id else pair.control_run_id
        states = [agent.get_state(thread(f"prod-{i}~shadow~{branch}")).values for i in range(RUNS)]
        [state] = [values for values in states if values]
        out.append(state["messages"])
    return out


def assert_excluded(guard: CriticGuard, runs: int = RUNS, reason: str = STOPPED) -> None:
    """Every pair excluded with the reason; counted by the guard, in the lifecycle (status) and the report."""
    pairs = guard.pairs()
    assert len(pairs) == runs
    assert {(p.status, p.reason) for p in pairs} == {(PairStatus.INCOMPLETE, reason)}
    assert guard.counters.shadow_stops == runs
    assert guard.lifecycle().incomplete == runs and guard.lifecycle().monitor.t == 0
    assert guard.store is not None
    [row] = status_rows(guard.store)
    assert row["incomplete"] == runs
    status = CliRunner().invoke(app, ["status", "--store", str(guard.config.store)], env={"COLUMNS": "250"})
    assert status.exit_code == 0
    assert re.search(rf"excluded +{runs} pairs: a shadow branch or a run could not finish", status.stdout)
    assert from_store(guard.store, guard.guard_key, source="test").store.incomplete_reasons == (reason,) * runs


README = Path(__file__).resolve().parents[3] / "README.md"


@tool
def search(query: str) -> str:
    """Search the web."""
    return "nothing found"


def search_policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
    """The mail agent with the README's tools: searches twice, e-mails ada, answers."""
    k = sum(isinstance(m, AIMessage) and bool(m.tool_calls) for m in messages)
    if k < 2:
        return tool_call("search", query="ada's address")
    return send_ada() if k == 2 else "done: sent to ada@example.com"


def test_the_readme_snippet_runs_a_safe_pilot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's drop-in block itself, executed: its e-mail tool is emulated in branches, so pairs complete and
    nothing is sent twice."""
    section = README.read_text().split("### 1. Drop-in", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet is not None and "shadow_tools=" in snippet[1]
    monkeypatch.chdir(tmp_path)  # the default store, sqlite:///critic_guard.db
    scope: dict[str, Any] = {
        "my_critic": mail_critic,
        "is_resolved": is_resolved,
        "model": ScriptedChatModel(policy=search_policy),
        "tools": [search, send_email],
        "saver": InMemorySaver(),
        "create_agent": create_agent,
    }
    exec(snippet[1], scope)
    middleware = scope["middleware"]  # the one object: it built its guard from the settings
    guard = middleware.guard
    try:
        assert (guard.config.mode.value, guard.policy.tau, guard.config.agent_name) == ("auto", 0.6, "support-bot")
        agent = scope["agent"]
        run_production(agent, middleware)
        assert SENT == ["ada@example.com"] * RUNS
        assert [p.status for p in guard.pairs()] == [PairStatus.COMPLETE] * RUNS
        assert guard.counters.shadow_stops == 0
    finally:
        middleware.close()


@pytest.mark.parametrize("mode", ["pilot", "auto"])
def test_readme_drop_in_never_sends_from_a_branch(mode: str, saver: Any, make_guard: GuardFactory) -> None:
    guard = readme_guard(make_guard, mode)
    agent, middleware = readme_agent(guard, saver)
    run_production(agent, middleware)

    assert SENT == ["ada@example.com"] * RUNS  # production's e-mails only: 0 sends in the branches
    assert_excluded(guard)
    for messages in branch_messages(agent, guard):  # each branch stopped at the e-mail it proposed
        assert messages[-1].tool_calls[0]["name"] == "send_email"
        assert sum(is_guard_note(m) for m in messages) == 3  # the treatment's three rollbacks came first
    assert LOOKED_UP == [False] * 2 * RUNS  # lookups ran before the fork: in production only


async def test_readme_drop_in_async(asaver: Any, make_guard: GuardFactory) -> None:
    guard = readme_guard(make_guard)
    agent, middleware = readme_agent(guard, asaver)
    for i in range(RUNS):
        out = await agent.ainvoke({"messages": [HumanMessage("mail ada")]}, thread(f"prod-{i}"))
        assert out["messages"][-1].text == "done: sent to ada@example.com"
    assert middleware.runner is not None
    await middleware.drain()
    assert SENT == ["ada@example.com"] * RUNS
    assert_excluded(guard)


@pytest.mark.parametrize("retry_position", ["before", "after"])
def test_a_tool_retry_middleware_cannot_make_a_stopped_pair_count(
    retry_position: str, saver: Any, make_guard: GuardFactory
) -> None:
    """``ToolRetryMiddleware`` (``on_failure="continue"``: it turns the last error into a tool message) listed before
    the guard wraps the gate and swallows its stop; listed after it, it never sees the call."""
    guard = readme_guard(make_guard)
    retry = ToolRetryMiddleware(initial_delay=0.0, jitter=False)
    assert retry.on_failure == "continue"
    agent, middleware = readme_agent(guard, saver, **{retry_position: [retry]})
    run_production(agent, middleware)

    assert SENT == ["ada@example.com"] * RUNS
    assert_excluded(guard)
    for messages in branch_messages(agent, guard):
        last = messages[-1]
        if retry_position == "before":  # swallowed: the stop became the branch's tool result, and nothing ran after
            assert isinstance(last, ToolMessage) and last.name == "send_email" and last.status == "error"
            assert "shadow branch stopped before tool 'send_email'" in last.text
        else:  # the stop left the branch at the proposal
            assert isinstance(last, AIMessage) and last.tool_calls[0]["name"] == "send_email"


def test_a_branch_that_ran_to_its_end_after_a_swallowed_stop_is_still_excluded(
    saver: Any, make_guard: GuardFactory
) -> None:
    """Tool and model retries before the guard, both ``on_failure="continue"``: the gate's stop becomes a tool
    message, the stopped branch's next model call raises again and becomes an error answer, and the branch ends
    normally with a failed outcome. Only the stop recorded in the branch keeps that from counting as a pair."""
    guard = readme_guard(make_guard)
    retries = [
        ModelRetryMiddleware(initial_delay=0.0, jitter=False),
        ToolRetryMiddleware(initial_delay=0.0, jitter=False),
    ]
    agent, middleware = readme_agent(guard, saver, before=retries)
    run_production(agent, middleware)

    assert SENT == ["ada@example.com"] * RUNS
    assert_excluded(guard)
    for messages in branch_messages(agent, guard):
        stop, answer = messages[-2:]
        assert isinstance(stop, ToolMessage) and stop.status == "error"
        assert isinstance(answer, AIMessage) and not answer.tool_calls and "ShadowIncomplete" in answer.text


class Notifier(AgentMiddleware[Any, Any, Any]):
    """Another middleware with a side effect of its own: at the end of every run it invokes ``notify``, unless the
    run is a shadow branch (when ``check`` is on)."""

    def __init__(self, *, check: bool) -> None:
        super().__init__()
        self.check = check

    def after_agent(self, state: Any, runtime: Any) -> None:
        if self.check and is_shadow_branch(runtime):
            return
        notify.invoke({"text": state["messages"][-1].text})


@pytest.mark.parametrize("check", [True, False])
def test_a_hook_that_checks_is_shadow_branch_never_acts_in_a_branch(
    check: bool, saver: Any, make_guard: GuardFactory
) -> None:
    """Branches that complete (the e-mail emulated) reach ``after_agent``: a hook that checks ``is_shadow_branch``
    skips its side effect there; one that does not check runs it in every branch too."""
    guard = readme_guard(make_guard)
    emails: list[dict[str, Any]] = []
    safety = {"lookup": READ_ONLY, "send_email": ToolSafety(emulate=lambda args: emails.append(args) or "queued")}
    agent, middleware = readme_agent(guard, saver, before=[Notifier(check=check)], shadow_tools=safety)
    run_production(agent, middleware)

    assert [p.status for p in guard.pairs()] == [PairStatus.COMPLETE] * RUNS
    production = ["done: sent to ada@example.com"] * RUNS
    in_branches = [] if check else ["done: queued"] * RUNS
    assert sorted(NOTIFIED) == sorted([*production, *in_branches])
    assert len(emails) == RUNS and SENT == ["ada@example.com"] * RUNS


class Probe(AgentMiddleware[Any, Any, Any]):
    """Counts the calls of each hook, by whether they ran in a shadow branch (``is_shadow_branch``)."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.seen: Counter[tuple[str, bool]] = Counter()

    @property
    def name(self) -> str:
        return f"Probe{self.label}"

    def _saw(self, hook: str, runtime: Any) -> None:
        in_branch = is_shadow_branch(runtime)
        assert is_shadow_branch() is in_branch  # no argument: the run's current config
        self.seen[hook, in_branch] += 1

    def before_agent(self, state: Any, runtime: Any) -> None:
        self._saw("before_agent", runtime)

    def before_model(self, state: Any, runtime: Any) -> None:
        self._saw("before_model", runtime)

    def after_model(self, state: Any, runtime: Any) -> None:
        self._saw("after_model", runtime)

    def after_agent(self, state: Any, runtime: Any) -> None:
        self._saw("after_agent", runtime)

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        self._saw("wrap_model_call", request.runtime)
        return handler(request)

    def wrap_tool_call(self, request: Any, handler: Any) -> Any:
        self._saw("wrap_tool_call", request.runtime)
        return handler(request)

    def in_branch(self) -> dict[str, int]:
        return {hook: self.seen[hook, True] for hook, _ in sorted(self.seen)}


def test_which_hooks_of_other_middlewares_run_in_a_branch(saver: Any, make_guard: GuardFactory) -> None:
    """What docs/pilot-design.md says, measured. The branch forked at step 2 (from the checkpoint the model node runs
    from) takes production's proposal, rolls it back three times (three model calls), runs the emulated e-mail,
    then answers at step 3 (one more model call): two model nodes, one tool call, one end of run."""
    guard = readme_guard(make_guard)
    outer, inner = Probe("Outer"), Probe("Inner")
    safety = {"lookup": READ_ONLY, "send_email": ToolSafety(emulate=lambda args: "queued")}
    agent, middleware = readme_agent(guard, saver, before=[outer], after=[inner], shadow_tools=safety)
    run_production(agent, middleware, runs=1)
    assert [p.status for p in guard.pairs()] == [PairStatus.COMPLETE]

    common = {"before_agent": 0, "before_model": 1, "after_model": 2, "after_agent": 1}
    # listed before the guard: its wrappers see every model node and every tool call of the branch
    assert outer.in_branch() == {**common, "wrap_model_call": 2, "wrap_tool_call": 1}
    # listed after it: not the fork step's first proposal (production's), but each retry and every later model call;
    # an emulated tool call never reaches it
    assert inner.in_branch() == {**common, "wrap_model_call": 4, "wrap_tool_call": 0}
    assert outer.seen["before_agent", False] == inner.seen["before_agent", False] == 1  # production ran them all


def test_declared_read_only_and_emulated_tools_run_in_branches(saver: Any, make_guard: GuardFactory) -> None:
    guard = readme_guard(make_guard)
    emails: list[dict[str, Any]] = []

    def emulate(args: dict[str, Any]) -> str:
        emails.append(args)
        return "queued (emulated)"

    def policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        """The mail agent, which looks ada up again after the treatment's first feedback (a read-only tool run in
        the branch), then sends the e-mail (emulated in the branch)."""
        called = [c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
        lookups = called.count("lookup")
        if is_guard_note(messages[-1]) and lookups == 2:
            return tool_call("lookup", name="ada")
        if "send_email" in called:
            return f"done: {messages[-1].text}"
        return tool_call("lookup", name="bob" if lookups else "ada") if lookups < 2 else send_ada()

    middleware: CriticGuardMiddleware[Any, Any] = CriticGuardMiddleware(
        guard,
        judge=lambda task, state: is_resolved(state),
        shadow_tools={"lookup": READ_ONLY, "send_email": ToolSafety(emulate=emulate)},
    )
    agent = create_agent(
        ScriptedChatModel(policy=policy), [lookup, send_email], middleware=[middleware], checkpointer=saver
    )
    run_production(agent, middleware)

    assert SENT == ["ada@example.com"] * RUNS and emails == [{"to": "ada@example.com"}] * RUNS
    assert sorted(LOOKED_UP) == [False] * 2 * RUNS + [True] * RUNS  # production's lookups, and one per branch
    pairs = guard.pairs()
    assert [(p.status, p.control_success, p.treatment_success) for p in pairs] == [
        (PairStatus.COMPLETE, True, True)
    ] * RUNS
    assert guard.counters.shadow_stops == 0 and guard.lifecycle().monitor.t == RUNS
    for messages in branch_messages(agent, guard):
        assert messages[-1].text == "done: queued (emulated)"


def test_undeclared_tools_are_reported_once_when_a_pilot_starts(
    make_guard: GuardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    guard = readme_guard(make_guard)
    agent, middleware = readme_agent(guard, InMemorySaver(), shadow_tools={"lookup": READ_ONLY})
    with caplog.at_level(logging.WARNING, logger="critic_guard_langgraph"):
        run_production(agent, middleware)
    warnings = [r.getMessage() for r in caplog.records if "shadow branches" in r.getMessage()]
    assert len(warnings) == 1
    assert "send_email (undeclared)" in warnings[0] and "lookup" not in warnings[0]
    assert "shadow_tools=" in warnings[0]


@pytest.mark.parametrize(
    ("mode", "shadow_tools"),
    [("pilot", {"lookup": READ_ONLY, "send_email": ToolSafety(emulate=lambda args: "queued")}), ("on", {})],
)
def test_no_warning_when_every_tool_is_declared_or_nothing_forks(
    mode: str, shadow_tools: dict[str, ToolSafety], make_guard: GuardFactory, caplog: pytest.LogCaptureFixture
) -> None:
    guard = readme_guard(make_guard, mode)
    agent, middleware = readme_agent(guard, InMemorySaver(), shadow_tools=shadow_tools)
    with caplog.at_level(logging.WARNING, logger="critic_guard_langgraph"):
        for i in range(2):
            agent.invoke({"messages": [HumanMessage("mail ada")]}, thread(f"prod-{i}"))
        assert middleware.wait(30)
    assert not [r for r in caplog.records if "shadow branches" in r.getMessage()]


def test_is_shadow_branch_reads_configs_and_runtimes() -> None:
    branch_config = {
        "configurable": {
            BRANCH_KEY: {"pair_id": "p", "run_id": "r", "arm": "treatment", "fork_step": 2, "action": "none"}
        }
    }
    assert is_shadow_branch(branch_config) is True
    assert is_shadow_branch({"configurable": {"thread_id": "t"}}) is False
    assert is_shadow_branch(None) is False  # outside a graph run
    assert is_shadow_branch() is False


@pytest.mark.parametrize("mode", ["off", "observe", "on", "pilot", "auto"])
def test_only_a_guard_that_forks_wraps_the_agents_tool_calls(mode: str, make_guard: GuardFactory) -> None:
    """LangChain wraps (and traces) every tool call of a middleware class that overrides the tool hooks; a guard
    that never forks has no branch to gate, so its middleware keeps LangChain's no-op hooks (same name, same
    class family)."""
    middleware = CriticGuardMiddleware(make_guard(lambda ctx: Verdict(0.1), mode=mode), outcomes="external")
    gated = type(middleware).awrap_tool_call is not AgentMiddleware.awrap_tool_call
    assert (
        gated == (type(middleware).wrap_tool_call is not AgentMiddleware.wrap_tool_call) == (mode in ("pilot", "auto"))
    )
    assert isinstance(middleware, CriticGuardMiddleware) and middleware.name == "CriticGuardMiddleware"
