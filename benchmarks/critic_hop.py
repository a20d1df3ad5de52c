"""What ``areview`` pays to run an async critic on the guard's own event loop thread, the hop that keeps its deadline.

    .venv/bin/python benchmarks/critic_hop.py [--calls 3000] [--rounds 5]

An ``async def`` critic returning at once, no store, mode ``on``: ``areview`` with the default timeout (the critic
runs on the guard's loop thread, :mod:`critic_guard.critic_loop`) against ``critic_timeout_s=None`` (awaited on the
caller's loop, no deadline to keep). For scale, a bare ``asyncio.run_coroutine_threadsafe`` round trip to another
loop thread, and the sync critic's hop in ``review`` (the worker pool), which this change leaves as it was. Rounds
alternate between the variants; reported is the median µs per call over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable

from critic_guard.guard import CriticGuard
from critic_guard.types import StepContext

CTX = StepContext("r", 3, ({"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}))


async def async_critic(ctx: StepContext) -> float:
    return 0.1


def sync_critic(ctx: StepContext) -> float:
    return 0.1


async def nothing() -> int:
    return 1


async def per_call_us(call: Callable[[], Awaitable[object]], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    other = asyncio.new_event_loop()
    threading.Thread(target=other.run_forever, daemon=True).start()
    hop = CriticGuard(async_critic, mode="on", store=None, agent_name="hop")
    inline = CriticGuard(async_critic, mode="on", store=None, critic_timeout_s=None, agent_name="inline")
    pool = CriticGuard(sync_critic, mode="on", store=None, agent_name="pool")

    async def sync_review() -> object:
        return pool.review(CTX)

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "areview, async critic on the guard's loop": lambda: hop.areview(CTX),
        "areview, async critic awaited inline (no timeout)": lambda: inline.areview(CTX),
        "bare run_coroutine_threadsafe round trip": lambda: asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(nothing(), other)
        ),
        "review, sync critic in the worker pool": sync_review,
    }
    results: dict[str, list[float]] = {label: [] for label in variants}
    for call in variants.values():  # warm-up
        await per_call_us(call, calls // 10)
    for r in range(rounds):
        for label, call in variants.items() if r % 2 == 0 else reversed(variants.items()):
            results[label].append(await per_call_us(call, calls))
    for guard in (hop, inline, pool):
        guard.close()
    other.call_soon_threadsafe(other.stop)
    print(f"critic hop: median µs per call over {rounds} rounds of {calls} calls")
    for label, values in results.items():
        print(f"  {label:<52} {statistics.median(values):8.1f}")
    added = statistics.median(results["areview, async critic on the guard's loop"]) - statistics.median(
        results["areview, async critic awaited inline (no timeout)"]
    )
    print(f"  the hop adds {added:.1f} µs per step")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per round and variant")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the variants alternate order)")
    args = parser.parse_args()
    if args.calls < 10 or args.rounds < 1:
        parser.error("--calls must be >= 10 and --rounds >= 1")
    asyncio.run(main(args.calls, args.rounds))
