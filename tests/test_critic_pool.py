"""How the guard runs a critic: in its worker pool under the timeout (which starts when a worker starts the call),
or inline for a critic that does no I/O; a saturated pool delays verdicts but loses none (docs/critics-and-policy.md,
"How critics run")."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from critic_guard.critics import ConstantCritic, FunctionCritic, RuleCritic, as_critic, is_inline
from critic_guard.guard import CriticGuard
from critic_guard.types import StepContext, Verdict

CTX = StepContext(run_id="r", step=0, messages=[{"role": "user", "content": "hi"}])


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker blocked


def ctx(run: int) -> StepContext:
    return StepContext(run_id=f"r{run}", step=0, messages=CTX.messages)


def test_built_in_pure_critics_are_inline_and_functions_are_not_unless_marked() -> None:
    def fn(ctx: StepContext) -> float:
        return 0.1

    assert is_inline(ConstantCritic(0.1)) and is_inline(RuleCritic(lambda ctx: False))
    assert not is_inline(RuleCritic(lambda ctx: False, inline=False))
    assert not is_inline(as_critic(fn)) and is_inline(FunctionCritic(fn, inline=True))
    fn.inline = True  # type: ignore[attr-defined]  # the attribute form, for a function passed as it is
    assert is_inline(as_critic(fn))


@pytest.mark.parametrize("inline", [True, False])
def test_an_inline_critic_is_judged_in_the_callers_thread_and_others_in_a_worker(inline: bool) -> None:
    threads: list[threading.Thread] = []

    def critic(ctx: StepContext) -> float:
        threads.append(threading.current_thread())
        return 0.3

    with CriticGuard(FunctionCritic(critic, inline=inline), store=None) as guard:
        assert guard.review(CTX).verdict == Verdict(0.3)

        async def on_a_loop() -> threading.Thread:
            assert (await guard.areview(ctx(1))).verdict == Verdict(0.3)
            return threading.current_thread()

        loop_thread = asyncio.run(on_a_loop())
    assert (threads[0] is threading.current_thread(), threads[1] is loop_thread) == (inline, inline)


def test_time_waiting_for_a_worker_does_not_count_against_the_timeout() -> None:
    """One worker, 80 calls at once of a 25 ms critic: the last waits about 2 s for the worker, twice the 1 s
    timeout, and is still judged; the waits are counted. (The timeout is 40 times the critic's own time, so that a
    loaded machine scheduling the worker late cannot time the critic itself out.)"""

    def critic(ctx: StepContext) -> float:
        time.sleep(0.025)
        return 0.2

    with CriticGuard(critic, store=None, critic_workers=1, critic_timeout_s=1.0) as guard:
        with ThreadPoolExecutor(80) as callers:
            reviews = list(callers.map(guard.review, [ctx(i) for i in range(80)]))
        counters = guard.counters
    assert [(r.verdict, r.critic_error) for r in reviews] == [(Verdict(0.2), None)] * 80
    assert (counters.verdicts, counters.critic_errors) == (80, 0)
    assert counters.critic_queued >= 1


def test_a_call_queued_behind_hung_workers_fails_open_instead_of_waiting_forever(release: threading.Event) -> None:
    """The only worker hangs in a critic past its timeout: the call queued behind it gives up as soon as every
    worker is hung (it would never start), with its own recorded error."""

    started = threading.Event()

    def critic(ctx: StepContext) -> float:
        started.set()
        release.wait()
        return 0.2

    with CriticGuard(critic, store=None, critic_workers=1, critic_timeout_s=0.05) as guard:
        with ThreadPoolExecutor(2) as callers:
            first = callers.submit(guard.review, ctx(0))
            started.wait()
            second = callers.submit(guard.review, ctx(1))  # the only worker is busy: queued
            reviews = [first.result(), second.result()]
        queued = guard.counters.critic_queued
        release.set()
    assert [str(r.critic_error) for r in reviews] == [
        "timeout after 0.05s",
        "critic pool exhausted: all 1 workers are stuck in timed-out critic calls",
    ]
    assert queued == 1
