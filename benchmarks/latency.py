"""Run latency by mode with a slow critic, and a burst of concurrent runs: what a user of a guarded agent waits.

    .venv/bin/python -m benchmarks.latency [--reps 20] [--critic-ms 50] [--burst 1000] [--burst-modes observe on]

**Latency by mode.** The agent is ``create_agent`` with a scripted chat model and a real tool
(:mod:`benchmarks.scripted_agent`: ``--steps`` tool steps and a final answer per run, an in-memory checkpointer
by default, as a pilot needs one). The critic takes ``--critic-ms`` per step and returns ``p_fail = 0.1``: every
step is judged, none is flagged, so no mode ever intervenes or forks and the modes differ only in where the
verdict is waited for. Three blocks, each against the same agent unguarded: a sync critic (``time.sleep``) under
``invoke``, the same critic under ``ainvoke``, and an async critic (``await asyncio.sleep``) under ``ainvoke``. In
each, modes ``off``, ``observe``, ``pilot`` (serving control, the default ``serve``), ``on`` and ``auto`` (a fresh
guard key: its lifecycle is in the pilot phase, serving control). Every variant is its own agent with its own
guard (``CriticGuard`` + ``CriticGuardMiddleware``, SQLite store on a file, defaults otherwise). Async runs share
one event loop (``asyncio.Runner``), so work a guard leaves on the loop is done there, as in a service.

The variants run interleaved (A B C ..., then ... C B A: none profits from warm caches or drifting load) for
``--reps`` repetitions after ``--warmup``. Reported per variant: the median wall time of a run with its bootstrap
95% interval, the ratio of medians to the unguarded agent of its block (pairs of the same repetition resampled
together, :mod:`benchmarks.intervals`), and the steps judged once the guard is closed (its counters: a verdict
made off the user's path still counts, one never made does not). Targets (issue 13): ``observe``, ``pilot`` and
``auto`` (serving control) at most 1.5x unguarded; ``on`` the unguarded run plus the critic's time only, read
here as at most 1.1x (unguarded + steps x critic time). A target is met when its whole interval is, not met when
its whole interval is past it, and undecided otherwise.

**Burst.** ``--burst`` concurrent one-step runs (the model answers at once: one judged step each), all started
together with ``asyncio.gather`` of ``ainvoke`` on one event loop, with a sync ``--critic-ms`` critic, in each of
``--burst-modes``. After the burst the guard is closed (``guard.close()``, off the loop: it drains whatever the
guard still owes), then its store is read back: runs recorded, steps with a verdict row, steps with a critic-error
row (by error type), and steps the model proposed without any row (counted by the scripted model). Target: every
step judged, or counted and excluded; never silently lost.

The machine's load shows in wall times: run the comparison on a quiet machine, or read the ratios (measured
interleaved, so a load change hits every variant alike) rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import intervals
from benchmarks.intervals import Interval
from benchmarks.scripted_agent import CHECKPOINTERS, Counting, answer, build_agent, request
from critic_guard import CriticGuard, FunctionCritic, Mode
from critic_guard.store.base import open_store
from critic_guard.types import StepContext
from critic_guard_langgraph import READ_ONLY, CriticGuardMiddleware

MODES = ("off", "observe", "pilot", "on", "auto")
RATIO_TARGET = 1.5  # observe, pilot, auto: run latency <= 1.5x unguarded
ON_TARGET = 1.1  # on: <= 1.1x (unguarded + the critic's time)
P_FAIL = 0.1  # below the default tau (0.6): judged and recorded, never flagged


def sleeping_critic(seconds: float) -> FunctionCritic:
    """A sync critic that blocks for ``seconds`` (an LLM judge called through a blocking client)."""

    def judge(ctx: StepContext) -> float:
        time.sleep(seconds)
        return P_FAIL

    return FunctionCritic(judge, name=f"sleep-{seconds * 1e3:g}ms")


def async_sleeping_critic(seconds: float) -> FunctionCritic:
    """A native-async critic that awaits for ``seconds`` (an LLM judge called through an async client)."""

    async def judge(ctx: StepContext) -> float:
        await asyncio.sleep(seconds)
        return P_FAIL

    return FunctionCritic(judge, name=f"async-sleep-{seconds * 1e3:g}ms")


@dataclass(slots=True)
class Variant:
    """One agent to time: its block (``api`` and critic kind), its mode, and its guard (None when unguarded)."""

    api: str  # invoke | ainvoke
    critic: str  # "-" (unguarded, off), "sync", "async"
    mode: str  # unguarded | off | observe | pilot | on | auto
    agent: Any
    guard: CriticGuard | None
    seconds: list[float] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.api}/{self.critic}/{self.mode}"


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """One line of the latency table."""

    api: str
    critic: str
    mode: str
    ms: Interval
    ratio: Interval
    judged: int | None  # steps with a verdict once the guard is closed (None: unguarded or off)
    critic_errors: int | None
    expected: int
    target: str


@dataclass(frozen=True, slots=True)
class BurstResult:
    """What one burst left behind: runs, steps proposed and recorded, and its timings."""

    mode: str
    runs: int
    failed_runs: int
    runs_recorded: int
    proposed: int  # model steps the agents proposed (counted by the scripted model)
    verdict_rows: int
    error_rows: dict[str, int]  # critic-error rows by error text
    wall_s: float
    drain_s: float
    run_ms: tuple[float, float]  # p50, p95 of a run's wall time
    counters: dict[str, int]

    @property
    def without_row(self) -> int:
        """Steps proposed that left neither a verdict nor a critic-error row."""
        return self.proposed - self.verdict_rows - sum(self.error_rows.values())

    @property
    def judged_share(self) -> float:
        return self.verdict_rows / self.proposed if self.proposed else float("nan")


def _guarded(
    mode: str, critic: FunctionCritic, slug: str, args: argparse.Namespace, tmp: Path, policy: Counting
) -> tuple[Any, CriticGuard]:
    guard = CriticGuard(critic, agent_name=f"latency-{slug}", mode=mode, store=f"sqlite:///{tmp / slug}.db")
    middleware = CriticGuardMiddleware(
        guard,
        shadow_tools={"add": READ_ONLY},  # a pure tool: safe in a branch (none forks here: no step is flagged)
        judge=_answered if Mode(mode) in (Mode.PILOT, Mode.AUTO) else None,  # a pilot records each run's outcome
    )
    agent = build_agent(policy, [middleware], checkpointer=args.checkpointer, path=tmp / f"{slug}.ckpt.db")
    return agent, guard


def _answered(task: Any, state: Any) -> bool:
    """The pilot's judge: the run ended with an answer (the scripted agent always does; this costs what a cheap
    judge costs)."""
    return bool(state["messages"][-1].text)


def build_variants(args: argparse.Namespace, tmp: Path) -> list[Variant]:
    """The three blocks of variants: (invoke, sync critic), (ainvoke, sync critic), (ainvoke, async critic)."""
    seconds = args.critic_ms / 1e3
    critics = {"sync": sleeping_critic(seconds), "async": async_sleeping_critic(seconds)}
    variants = []
    for api, kinds in (("invoke", ("sync",)), ("ainvoke", ("sync", "async"))):
        plain = build_agent(Counting(args.steps), [], checkpointer=args.checkpointer, path=tmp / f"{api}.ckpt.db")
        variants.append(Variant(api, "-", "unguarded", plain, None))
        off, guard = _guarded("off", critics["sync"], f"{api}-off", args, tmp, Counting(args.steps))
        variants.append(Variant(api, "-", "off", off, guard))  # the critic is never called
        for kind in kinds:
            for mode in MODES[1:]:
                slug = f"{api}-{kind}-{mode}"
                agent, guard = _guarded(mode, critics[kind], slug, args, tmp, Counting(args.steps))
                variants.append(Variant(api, kind, mode, agent, guard))
    return variants


def _run(variant: Variant, thread: str, loop: asyncio.Runner, steps: int) -> float:
    """Wall seconds of one run, checked to give the right answer."""
    config = {"configurable": {"thread_id": thread}}
    started = time.perf_counter()
    if variant.api == "invoke":
        out = variant.agent.invoke(request(), config)
    else:
        out = loop.run(variant.agent.ainvoke(request(), config))
    elapsed = time.perf_counter() - started
    if out["messages"][-1].text != answer(steps):
        raise RuntimeError(f"{variant.label}: wrong answer {out['messages'][-1].text!r}")
    return elapsed


def measure_latency(args: argparse.Namespace, tmp: Path) -> list[LatencyRow]:
    """Time every variant, interleaved; close the guards (draining them) and read their counters."""
    variants = build_variants(args, tmp)
    with asyncio.Runner() as loop:
        runs = 0
        for rep in range(-args.warmup, args.reps):
            for variant in variants if rep % 2 == 0 else reversed(variants):
                runs += 1
                elapsed = _run(variant, f"t{runs}", loop, args.steps)
                if rep >= 0:
                    variant.seconds.append(elapsed)
        for variant in variants:  # on the loop's side, so that whatever a guard left on the loop can finish
            if variant.guard is not None:
                loop.run(asyncio.to_thread(variant.guard.close))
    return latency_rows(variants, args)


def latency_rows(variants: Sequence[Variant], args: argparse.Namespace) -> list[LatencyRow]:
    base = {v.api: v.seconds for v in variants if v.mode == "unguarded"}
    critic_s = (args.steps + 1) * args.critic_ms / 1e3  # the critic's time per run, on the user's path
    expected = (args.warmup + args.reps) * (args.steps + 1)
    rows = []
    for v in variants:
        ms = intervals.median(v.seconds).scaled(1e3)
        ratio = intervals.ratio_of_medians(v.seconds, base[v.api])
        target = ""
        if v.mode in ("observe", "pilot", "auto"):
            target = f"<= {RATIO_TARGET}x unguarded: {ratio.at_most(RATIO_TARGET)}"
        elif v.mode == "on":
            over = intervals.paired(_over_critic(critic_s), v.seconds, base[v.api])
            target = f"<= {ON_TARGET}x (unguarded + critic): {over.show(2)}x {over.at_most(ON_TARGET)}"
        counters = None if v.guard is None or v.mode == "off" else v.guard.counters
        rows.append(
            LatencyRow(
                v.api,
                v.critic,
                v.mode,
                ms,
                ratio,
                None if counters is None else counters.verdicts,
                None if counters is None else counters.critic_errors,
                expected,
                target,
            )
        )
    return rows


def _over_critic(critic_s: float) -> Callable[..., NDArray[np.float64]]:
    """median(guarded) / (median(unguarded) + the critic's time per run)."""

    def statistic(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
        return np.median(x, axis=axis) / (np.median(y, axis=axis) + critic_s)

    return statistic


def print_latency(rows: Sequence[LatencyRow], args: argparse.Namespace) -> None:
    print(
        f"run latency by mode: create_agent, {args.steps} tool steps + final answer ({args.steps + 1} model steps), "
        f"critic {args.critic_ms:g} ms per step (p_fail {P_FAIL}: judged, never flagged), "
        f"checkpointer={args.checkpointer}, {args.reps} interleaved repetitions after {args.warmup} warm-up"
    )
    head = f"{'api':<8}{'critic':<8}{'mode':<11}{'ms/run [95% CI]':>26}{'x unguarded [95% CI]':>24}"
    print(f"  {head}  {'judged':<14}target")
    for row in rows:
        judged = "-"
        if row.judged is not None:
            judged = f"{row.judged}/{row.expected}"
            if row.critic_errors:
                judged += f" +{row.critic_errors} err"
        print(
            f"  {row.api:<8}{row.critic:<8}{row.mode:<11}{row.ms.show():>26}{row.ratio.show(2):>24}  "
            f"{judged:<14}{row.target}"
        )
    print(
        "  ms/run: median wall time of a run; x unguarded: ratio of medians to the unguarded agent of the same api; "
        "judged: steps with a verdict after guard.close() / steps run (warm-up included); intervals: bootstrap 95%"
    )


# -- burst ------------------------------------------------------------------------------------------------------


async def _burst_runs(agent: Any, guard: CriticGuard, n: int) -> tuple[list[float | BaseException], float, float]:
    async def one(i: int) -> float:
        started = time.perf_counter()
        out = await agent.ainvoke(request(), {"configurable": {"thread_id": f"burst-{i}"}})
        if out["messages"][-1].text != answer(0):
            raise RuntimeError(f"burst run {i}: wrong answer {out['messages'][-1].text!r}")
        return time.perf_counter() - started

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    wall = time.perf_counter() - started
    await asyncio.to_thread(guard.close)  # drains what the guard still owes; off the loop, as a service would
    return list(results), wall, time.perf_counter() - started - wall


def measure_burst(mode: str, args: argparse.Namespace, tmp: Path) -> BurstResult:
    """One burst of ``args.burst`` concurrent one-step runs in ``mode``, then the store read back."""
    policy = Counting(0)
    slug = f"burst-{mode}"
    agent, guard = _guarded(mode, sleeping_critic(args.critic_ms / 1e3), slug, args, tmp, policy)
    results, wall, drain = asyncio.run(_burst_runs(agent, guard, args.burst))
    ok = sorted(r for r in results if isinstance(r, float))
    store = open_store(f"sqlite:///{tmp / slug}.db")
    assert store is not None
    with store:
        runs = store.runs(guard.guard_key)
        steps = [step for run in runs for step in store.steps_of(run.run_id)]
    counters = guard.counters
    return BurstResult(
        mode=mode,
        runs=args.burst,
        failed_runs=len(results) - len(ok),
        runs_recorded=len(runs),
        proposed=policy.calls,
        verdict_rows=sum(step.p_fail is not None for step in steps),
        error_rows=dict(Counter(step.critic_error or "?" for step in steps if step.p_fail is None)),
        wall_s=wall,
        drain_s=drain,
        run_ms=(_quantile(ok, 0.5) * 1e3, _quantile(ok, 0.95) * 1e3),
        counters={f.name: v for f in dataclasses.fields(counters) if isinstance(v := getattr(counters, f.name), int)},
    )


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def print_burst(results: Sequence[BurstResult], args: argparse.Namespace) -> None:
    print(
        f"burst: {args.burst} concurrent one-step runs (asyncio.gather of ainvoke), sync critic {args.critic_ms:g} ms, "
        f"checkpointer={args.checkpointer}, guard defaults otherwise"
    )
    print(
        f"  {'mode':<9}{'runs ok':>10}{'in store':>10}{'steps':>8}{'judged':>16}{'critic errors':>15}"
        f"{'no row':>8}{'wall s':>8}{'drain s':>9}{'run p50/p95 ms':>17}"
    )
    for r in results:
        judged = f"{r.verdict_rows} ({r.judged_share:.1%})"
        print(
            f"  {r.mode:<9}{r.runs - r.failed_runs:>10}{r.runs_recorded:>10}{r.proposed:>8}{judged:>16}"
            f"{sum(r.error_rows.values()):>15}{r.without_row:>8}{r.wall_s:>8.2f}{r.drain_s:>9.2f}"
            f"{f'{r.run_ms[0]:.0f}/{r.run_ms[1]:.0f}':>17}"
        )
    for r in results:
        errors = ", ".join(f"{text} x{n}" for text, n in sorted(r.error_rows.items())) or "none"
        counters = " ".join(f"{name}={value}" for name, value in r.counters.items() if value)
        unjudged = r.proposed - r.verdict_rows
        verdict = (
            "met"
            if unjudged == 0
            else f"NOT met ({unjudged} steps unjudged: {sum(r.error_rows.values())} recorded as critic errors, "
            f"{r.without_row} without any row)"
        )
        print(f"  {r.mode}: critic errors {errors}; counters {counters or 'all zero'}")
        print(f"  {r.mode}: target every step judged (or counted and excluded): {verdict}")
    print(
        "  steps: model steps proposed; judged: verdict rows in the store after guard.close(); no row: steps that "
        "left neither a verdict nor a critic-error row; wall: the gather; drain: guard.close() after it"
    )


# -- command line -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyReport:
    """Everything the benchmark measured (what :func:`main` printed, as data)."""

    rows: list[LatencyRow]
    bursts: list[BurstResult]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=20, help="measured runs per variant, interleaved (0: no table)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured repetitions first")
    parser.add_argument("--steps", type=int, default=8, help="tool steps per run (plus one final answer)")
    parser.add_argument("--critic-ms", type=float, default=50.0, help="the critic's time per step")
    parser.add_argument("--checkpointer", choices=CHECKPOINTERS, default="memory")
    parser.add_argument("--burst", type=int, default=1000, help="concurrent one-step runs in a burst (0: no burst)")
    parser.add_argument("--burst-modes", nargs="+", choices=MODES[1:], default=["observe", "on"])
    args = parser.parse_args(argv)
    if min(args.reps, args.warmup, args.steps, args.burst) < 0 or args.critic_ms < 0:
        parser.error("sizes and --critic-ms must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> LatencyReport:
    args = parse_args(argv)
    rows: list[LatencyRow] = []
    bursts: list[BurstResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.reps:
            rows = measure_latency(args, Path(tmp))
            print_latency(rows, args)
        if args.burst:
            bursts = [measure_burst(mode, args, Path(tmp)) for mode in args.burst_modes]
            print_burst(bursts, args)
    return LatencyReport(rows, bursts)


if __name__ == "__main__":
    main()
