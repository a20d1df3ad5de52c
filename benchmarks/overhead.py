"""What the guard adds to each step of a real create_agent agent, measured side by side.

    .venv/bin/python benchmarks/overhead.py [--reps 300] [--steps 8] [--checkpointer none|memory|sqlite] [--async]

The agent is ``create_agent`` with a scripted chat model (no network) and a real tool: ``--steps`` tool steps and
a final answer per run. The guarded variant adds :class:`CriticGuardMiddleware` with a trivial function critic
(``p_fail = 0.1``: judged and recorded, never flagged) and the default SQLite store on a file, in mode ``on``, so
every hook runs (``before_agent``; ``wrap_model_call``, judging each proposal with a store write; ``after_agent``).
Its telemetry goes to the global OpenTelemetry providers, which nobody configures here: tracing off, as in an
application without OTel. ``tracing on`` is the same guard with an SDK tracer and meter provider exporting to a
local OTLP/JSON lines file through the batch processor (a run span, a step span per step, a verdict event and
metric per step).

Reference variants split the cost: a middleware whose ``wrap_model_call`` only calls the model shows what LangChain
charges for any model-call hook (its tracing wrapper and handler chain: the floor of a guard that judges inside the
model node); a middleware with empty ``before_agent`` / ``after_agent`` hooks shows what LangGraph charges for the
two per-run nodes (one superstep each per run); ``critic_timeout_s=None`` runs the sync critic inline instead of in
the guard's worker thread (the thread hop is what enforces the timeout on a sync critic); ``store=None`` records
nothing. With ``--async``, two more: an ``async def`` critic, which the guard runs on its own event loop thread (the
hop that keeps its deadline even if it ignores cancellation or blocks), and the same with ``critic_timeout_s=None``,
awaited on the caller's loop.

The variants run interleaved (A B C ..., then ... C B A, and so on: the order alternates so that none profits from
warm caches or drifting machine load) for ``--reps`` repetitions after a warm-up. Each run's wall time is divided
by its number of model steps. Reported: the median µs per step of each variant, the median of the paired
differences (variant minus the unguarded run of the same repetition), and the ratio of the medians. Target of
the issue: under 500 µs added per step by the guard with its defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware.types import AgentMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from critic_guard.guard import CriticGuard
from critic_guard.telemetry import configure_telemetry
from critic_guard.types import StepContext
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

TARGET_US = 500.0


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Counting:
    """The scripted agent: adds 1, 2, ..., ``steps`` with one tool call per step, then answers."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        total = int(results[-1].text) if results else 0
        return tool_call("add", a=total, b=len(results) + 1) if len(results) < self.steps else f"total {total}"


def trivial_critic(ctx: StepContext) -> float:
    return 0.1


async def trivial_async_critic(ctx: StepContext) -> float:
    return 0.1


class NoOpModelHook(AgentMiddleware):  # type: ignore[type-arg]
    """Reference: LangChain's cost of one ``wrap_model_call`` hook that only calls the model."""

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        return handler(request)

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        return await handler(request)


class NoOpRunHooks(AgentMiddleware):  # type: ignore[type-arg]
    """Reference: LangGraph's cost of the two per-run nodes (``before_agent`` / ``after_agent``) doing nothing."""

    def before_agent(self, state: Any, runtime: Any) -> None:
        return None

    def after_agent(self, state: Any, runtime: Any) -> None:
        return None


def make_checkpointer(kind: str, path: Path) -> Any:
    if kind == "none":
        return None
    if kind == "memory":
        return InMemorySaver()
    return SqliteSaver(sqlite3.connect(path, check_same_thread=False))


def build(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], list[CriticGuard], Any]:
    """The agents to compare, by label, the guards to check and close afterwards, and the telemetry handles."""
    store = f"sqlite:///{tmp / 'guard.db'}"
    traced = configure_telemetry(file=tmp / "traces.jsonl", otlp=False, set_global=False)
    guards = {
        "guarded (defaults)": CriticGuard(trivial_critic, agent_name="bench", mode="on", store=store),
        "guarded, tracing on (OTLP/JSON file)": CriticGuard(
            trivial_critic, agent_name="bench-traced", mode="on", store=store, telemetry=traced.telemetry
        ),
        "guarded, critic inline": CriticGuard(
            trivial_critic, agent_name="bench-inline", mode="on", store=store, critic_timeout_s=None
        ),
        "guarded, critic inline, no store": CriticGuard(
            trivial_critic, agent_name="bench-nostore", mode="on", store=None, critic_timeout_s=None
        ),
    }
    if args.use_async:  # an async critic runs on the guard's own loop thread (the hop that keeps its deadline)
        guards["guarded, async critic"] = CriticGuard(
            trivial_async_critic, agent_name="bench-async", mode="on", store=store
        )
        guards["guarded, async critic inline"] = CriticGuard(
            trivial_async_critic, agent_name="bench-async-inline", mode="on", store=store, critic_timeout_s=None
        )
    middleware: dict[str, list[Any]] = {
        "unguarded": [],
        "no-op model-call hook": [NoOpModelHook()],
        "no-op per-run hooks": [NoOpRunHooks()],
        **{label: [CriticGuardMiddleware(guard)] for label, guard in guards.items()},
    }
    model = ScriptedChatModel(policy=Counting(args.steps))
    agents = {
        label: create_agent(
            model, [add], middleware=mw, checkpointer=make_checkpointer(args.checkpointer, tmp / f"{i}.db")
        )
        for i, (label, mw) in enumerate(middleware.items())
    }
    return agents, list(guards.values()), traced


def run_once(agent: Any, args: argparse.Namespace, thread: str) -> float:
    """Seconds per model step of one run."""
    config = {"configurable": {"thread_id": thread}}
    request = {"messages": [HumanMessage("Add 1, 2, 3, ...")]}
    started = time.perf_counter()
    out = asyncio.run(agent.ainvoke(request, config)) if args.use_async else agent.invoke(request, config)
    elapsed = time.perf_counter() - started
    assert out["messages"][-1].text == f"total {args.steps * (args.steps + 1) // 2}"
    return elapsed / (args.steps + 1)


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    """Per-step seconds of each variant's runs, interleaved."""
    agents, guards, traced = build(args, tmp)
    order = list(agents.items())
    seconds: dict[str, list[float]] = {label: [] for label in agents}
    runs = 0
    for rep in range(-args.warmup, args.reps):
        for label, agent in order if rep % 2 == 0 else reversed(order):
            runs += 1
            per_step = run_once(agent, args, f"t{runs}")
            if rep >= 0:
                seconds[label].append(per_step)
    for guard in guards:  # each guard really judged every step
        judged = guard.counters.verdicts
        assert judged == (args.warmup + args.reps) * (args.steps + 1), (guard, judged)
        guard.close()
    traced.shutdown()
    return seconds


def report(seconds: dict[str, list[float]], args: argparse.Namespace) -> None:
    base = seconds["unguarded"]
    print(
        f"critic-guard overhead per agent step: create_agent, {args.steps} tool steps + final answer, "
        f"{'ainvoke' if args.use_async else 'invoke'}, checkpointer={args.checkpointer}, trivial function critic, "
        f"{args.reps} interleaved repetitions"
    )
    print(f"  {'variant':<40}{'µs/step':>10}{'added µs/step':>16}{'ratio':>8}")
    added: dict[str, float] = {}
    for label, runs in seconds.items():
        added[label] = statistics.median(v - b for v, b in zip(runs, base, strict=True)) * 1e6
        ratio = statistics.median(runs) / statistics.median(base)
        print(f"  {label:<40}{statistics.median(runs) * 1e6:10.1f}{added[label]:+16.1f}{ratio:8.2f}")
    print("  µs/step: median; added: median of paired differences with the unguarded run of the same repetition")
    guard = added["guarded (defaults)"]
    verdict = "met" if guard < TARGET_US else "NOT met"
    print(f"  guard with defaults (SQLite store on): {guard:+.1f} µs per step; target < {TARGET_US:.0f} µs: {verdict}")
    hook, nodes = added["no-op model-call hook"], added["no-op per-run hooks"]
    inline, bare = added["guarded, critic inline"], added["guarded, critic inline, no store"]
    print(
        f"  split: LangChain's model-call hook {hook:+.1f}, LangGraph's per-run nodes {nodes:+.1f}, "
        f"the thread hop that enforces the critic timeout {guard - inline:+.1f}, the store {inline - bare:+.1f}, "
        f"the guard's own work {bare - hook - nodes:+.1f} µs per step"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300, help="measured runs per variant (interleaved)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured repetitions first")
    parser.add_argument("--steps", type=int, default=8, help="tool steps per run (plus one final answer)")
    parser.add_argument("--checkpointer", choices=["none", "memory", "sqlite"], default="none")
    parser.add_argument("--async", dest="use_async", action="store_true", help="ainvoke instead of invoke")
    args = parser.parse_args()
    if args.reps < 1 or args.steps < 0 or args.warmup < 0:
        parser.error("--reps must be >= 1, --steps and --warmup >= 0")
    with tempfile.TemporaryDirectory() as tmp:
        seconds = measure(args, Path(tmp))
    report(seconds, args)


if __name__ == "__main__":
    main()
