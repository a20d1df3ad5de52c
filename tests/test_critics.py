"""Critic adapters and the one function that decides which critic outputs are acceptable."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import numpy as np
import pytest

from critic_guard.critics import (
    ConstantCritic,
    Critic,
    FunctionCritic,
    MalformedVerdictError,
    RuleCritic,
    ThresholdCritic,
    as_critic,
    is_native_async,
    to_verdict,
)
from critic_guard.types import StepContext, Verdict

CTX = StepContext("run-1", 3, ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}))


def _delete_call(ctx: StepContext) -> bool:
    calls = ctx.proposed.get("tool_calls") or []
    return any(call["name"] == "delete" for call in calls)


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        (Verdict(0.2, "r", "ok"), Verdict(0.2, "r", "ok")),
        (0.3, Verdict(0.3)),
        (1, Verdict(1.0)),
        (np.float64(0.4), Verdict(0.4)),
        ((0.7, "looping"), Verdict(0.7, "looping")),
        ([0.7, None], Verdict(0.7)),
        ({"p_fail": 0.2, "label": "ok"}, Verdict(0.2, label="ok")),
    ],
)
def test_to_verdict_accepts(out: Any, expected: Verdict) -> None:
    assert to_verdict(out) == expected


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (True, "bool"),
        ("0.5", "returned str"),
        (None, "returned NoneType"),
        ((0.5,), "returned tuple"),
        ((0.5, 3), "rationale must be a str"),
        (("x", "r"), "p_fail must be a number"),
        ({"p": 1}, "returned dict"),
        ({"p_fail": 0.5, "extra": 1}, "unknown keys ['extra']"),
        ({"p_fail": 0.5, "label": 2}, "label must be a str"),
    ],
)
def test_to_verdict_rejects_malformed(out: Any, message: str) -> None:
    with pytest.raises(MalformedVerdictError, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_verdict(out)


@pytest.mark.parametrize("p", [math.nan, 1.5, -0.1, math.inf])
def test_to_verdict_rejects_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        to_verdict(p)


def test_function_critic_sync() -> None:
    def my_critic(ctx: StepContext) -> tuple[float, str]:
        return (0.1 * ctx.step, f"step {ctx.step}")

    critic = FunctionCritic(my_critic)
    assert critic.name == "test_function_critic_sync.<locals>.my_critic"
    assert critic.native_async is False
    assert critic.judge(CTX) == Verdict(0.1 * 3, "step 3")
    assert asyncio.run(critic.ajudge(CTX)) == Verdict(0.1 * 3, "step 3")
    assert isinstance(critic, Critic)


def test_function_critic_sync_ajudge_runs_off_the_loop() -> None:
    threads: list[str] = []

    def fn(ctx: StepContext) -> float:
        threads.append(threading.current_thread().name)
        return 0.5

    asyncio.run(FunctionCritic(fn).ajudge(CTX))
    assert threads and threads[0] != threading.main_thread().name


def test_function_critic_async() -> None:
    async def acritic(ctx: StepContext) -> float:
        await asyncio.sleep(0)
        return 0.8

    critic = FunctionCritic(acritic, name="acritic@v2")
    assert critic.name == "acritic@v2"
    assert critic.native_async is True
    assert critic.judge(CTX) == Verdict(0.8)  # outside a loop: runs the coroutine to completion
    assert asyncio.run(critic.ajudge(CTX)) == Verdict(0.8)


async def test_async_function_critic_judged_synchronously_inside_a_loop_is_an_error() -> None:
    async def acritic(ctx: StepContext) -> float:
        return 0.8

    with pytest.raises(RuntimeError, match="use ajudge"):
        FunctionCritic(acritic).judge(CTX)


def test_callable_object_with_async_call_is_native_async() -> None:
    class Judge:
        async def __call__(self, ctx: StepContext) -> Verdict:
            return Verdict(0.25)

    critic = FunctionCritic(Judge())
    assert critic.native_async is True
    assert critic.name == "Judge"
    assert asyncio.run(critic.ajudge(CTX)) == Verdict(0.25)


def test_sync_function_returning_a_coroutine_is_awaited() -> None:
    async def inner(ctx: StepContext) -> float:
        return 0.6

    critic = FunctionCritic(lambda ctx: inner(ctx))
    assert critic.native_async is False
    assert critic.judge(CTX) == Verdict(0.6)


def test_constant_critic() -> None:
    critic = ConstantCritic(0.7, rationale="always")
    assert critic.name == "constant-0.7"
    assert critic.judge(CTX) == Verdict(0.7, "always")
    assert asyncio.run(critic.ajudge(CTX)) == Verdict(0.7, "always")
    assert is_native_async(critic) is True
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ConstantCritic(1.2)


def test_rule_critic() -> None:
    critic = RuleCritic(_delete_call, p_hi=0.95, p_lo=0.05, rationale="deletes data", name="no-delete@1")
    deleting = StepContext("r", 2, ({"role": "assistant", "content": "", "tool_calls": [{"name": "delete"}]},))
    assert critic.judge(deleting) == Verdict(0.95, "deletes data")
    assert critic.judge(CTX) == Verdict(0.05)
    assert asyncio.run(critic.ajudge(deleting)) == Verdict(0.95, "deletes data")
    assert is_native_async(critic) is False
    assert RuleCritic(_delete_call).name == "rule-_delete_call"
    assert ThresholdCritic is RuleCritic


def test_rule_critic_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="p_lo <= p_hi"):
        RuleCritic(_delete_call, p_hi=0.2, p_lo=0.8)
    with pytest.raises(MalformedVerdictError, match="must return a bool"):
        RuleCritic(lambda ctx: 1).judge(CTX)  # type: ignore[arg-type,return-value]


def test_as_critic() -> None:
    constant = ConstantCritic(0.1)
    assert as_critic(constant) is constant
    wrapped = as_critic(lambda ctx: 0.2)
    assert isinstance(wrapped, FunctionCritic)
    assert wrapped.judge(CTX) == Verdict(0.2)
    with pytest.raises(TypeError, match="expected a Critic or a callable"):
        as_critic(42)  # type: ignore[arg-type]


def test_as_critic_requires_a_name() -> None:
    class Nameless:
        name = ""

        def judge(self, ctx: StepContext) -> Verdict:
            return Verdict(0.1)

        async def ajudge(self, ctx: StepContext) -> Verdict:
            return Verdict(0.1)

    with pytest.raises(TypeError, match="non-empty str `name`"):
        as_critic(Nameless())


def test_native_async_detection_for_protocol_classes() -> None:
    class AsyncOne:
        name = "a"

        def judge(self, ctx: StepContext) -> Verdict:
            return Verdict(0.1)

        async def ajudge(self, ctx: StepContext) -> Verdict:
            return Verdict(0.1)

    class Declared(AsyncOne):
        native_async = False

    assert is_native_async(AsyncOne()) is True
    assert is_native_async(Declared()) is False
