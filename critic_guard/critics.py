"""Critics: anything that maps a trajectory prefix (a :class:`StepContext`) to a :class:`Verdict`.

A critic has a ``name`` (its identity, including a version: it is part of the guard key, so changing the critic
starts fresh evidence) and a sync and an async way to judge. Plain functions become critics through
:func:`as_critic`; :class:`ConstantCritic` and :class:`RuleCritic` exist for tests and demos.

Critics do not need to be defensive: the guard runs them with a timeout and turns any exception or malformed
output into a recorded ``critic_error`` with no intervention (fail open). :func:`to_verdict` is the one place that
decides which outputs of a plain function are acceptable.

Optional attribute ``native_async: bool``: tells the guard whether ``ajudge`` is truly non-blocking. When true,
``CriticGuard.areview`` runs ``ajudge`` on the guard's own event loop thread (:mod:`critic_guard.critic_loop`); when
false, it runs ``judge`` in the guard's worker pool instead. Either way the caller's loop only awaits a future, so
the deadline holds. Without the attribute, a critic counts as native async when its ``ajudge`` is an ``async def``.

Optional attribute ``inline: bool`` (default False): the critic does no I/O and returns quickly (a rule, a constant, a
small local classifier), so the guard calls it right in the step, without the hop to a worker thread that enforces
the timeout (the hop costs more than such a critic, docs/critics-and-policy.md). :class:`ConstantCritic` and
:class:`RuleCritic` are inline; a function becomes one with ``FunctionCritic(fn, inline=True)`` (or ``fn.inline =
True`` before passing it). An inline critic has no timeout: mark only code that cannot block.

Optional attribute ``caller_loop: bool`` (default False): a native-async critic whose async clients are bound to the
caller's event loop (e.g. a LangChain chat model: langchain-openai shares one ``httpx.AsyncClient`` per base URL
across the process, and an async HTTP client cannot serve two loops) runs as a task on the caller's loop instead.
Its deadline still holds if it ignores cancellation (the step stops waiting and the task is left to finish), but a
critic that blocks the loop cannot be preempted there.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from numbers import Real
from typing import Any, Protocol, runtime_checkable

from critic_guard.types import StepContext, Verdict

__all__ = [
    "ConstantCritic",
    "Critic",
    "FunctionCritic",
    "MalformedVerdictError",
    "RuleCritic",
    "ThresholdCritic",
    "as_critic",
    "is_inline",
    "is_native_async",
    "runs_on_caller_loop",
    "to_verdict",
]


@runtime_checkable
class Critic(Protocol):
    """The critic protocol: a named, versioned judge of trajectory prefixes."""

    name: str

    def judge(self, ctx: StepContext) -> Verdict:
        """Predict whether the run will fail, given the prefix up to the proposed step."""
        ...

    async def ajudge(self, ctx: StepContext) -> Verdict:
        """Async variant of :meth:`judge`."""
        ...


class MalformedVerdictError(ValueError):
    """A critic returned something that is not a verdict (the guard records it as a critic error)."""


def to_verdict(out: object) -> Verdict:
    """Convert a critic function's output to a :class:`Verdict`.

    Accepted: a ``Verdict``; a real number ``p_fail``; a pair ``(p_fail, rationale)``; a mapping with a
    ``p_fail`` key and optional ``rationale`` / ``label``. Booleans are rejected (is ``True`` "fails" or "fine"?).
    ``Verdict`` itself checks the values (a finite ``p_fail`` in [0, 1], str or None texts), so anything else raises
    here and becomes a recorded critic error.
    """
    if isinstance(out, Verdict):
        return out
    if isinstance(out, bool):
        raise MalformedVerdictError("critic returned a bool; return p_fail in [0, 1] (1.0 = certain failure)")
    if isinstance(out, Real):
        return _checked_verdict(out)
    if isinstance(out, tuple | list) and len(out) == 2:
        p_fail, rationale = out
        return _checked_verdict(p_fail, rationale)
    if isinstance(out, Mapping) and "p_fail" in out:
        unknown = set(out) - {"p_fail", "rationale", "label"}
        if unknown:
            raise MalformedVerdictError(f"critic output has unknown keys {sorted(unknown)}")
        return _checked_verdict(out["p_fail"], out.get("rationale"), out.get("label"))
    raise MalformedVerdictError(
        f"critic returned {type(out).__name__}; expected a Verdict, a float p_fail, (p_fail, rationale) "
        "or a mapping with 'p_fail'"
    )


def _checked_verdict(p_fail: object, rationale: object = None, label: object = None) -> Verdict:
    """``Verdict`` checks its values; its refusal is a malformed critic output."""
    try:
        return Verdict(p_fail, rationale, label)  # type: ignore[arg-type]  # checked by Verdict.__post_init__
    except (TypeError, ValueError) as exc:
        raise MalformedVerdictError(str(exc)) from None


def is_native_async(critic: Critic) -> bool:
    """Whether the guard may await ``critic.ajudge`` on the event loop (see the module docstring)."""
    declared = getattr(critic, "native_async", None)
    if isinstance(declared, bool):
        return declared
    return inspect.iscoroutinefunction(critic.ajudge)


def is_inline(critic: Critic) -> bool:
    """Whether the guard calls ``critic`` in the step itself, without a worker thread and its timeout."""
    return getattr(critic, "inline", False) is True


def runs_on_caller_loop(critic: Critic) -> bool:
    """Whether ``areview`` runs the native-async ``critic`` on the caller's loop (see the module docstring)."""
    return getattr(critic, "caller_loop", False) is True


def _run_sync(awaitable: Awaitable[Any]) -> Any:
    """Run an awaitable to completion from sync code; refuse inside a running loop (it would deadlock)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    if inspect.iscoroutine(awaitable):
        awaitable.close()
    raise RuntimeError("an async critic cannot be judged synchronously inside a running event loop; use ajudge")


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class FunctionCritic:
    """A critic from a plain function ``fn(ctx) -> Verdict | float | (p_fail, rationale)``, sync or async.

    The default name is the function's qualified name; pass ``name="my-critic@v2"`` to version it, since the name
    is part of the guard key. ``inline=True``: the function does no I/O, so the guard calls it in the step without a
    worker thread (and without a timeout); default: the function's own ``inline`` attribute, else False.
    """

    def __init__(
        self, fn: Callable[[StepContext], Any], *, name: str | None = None, inline: bool | None = None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionCritic needs a callable, got {type(fn).__name__}")
        self._fn = fn
        self.name = name or _callable_name(fn)
        self.inline = getattr(fn, "inline", False) is True if inline is None else inline
        # A callable object with an `async def __call__` is async too.
        self.native_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def judge(self, ctx: StepContext) -> Verdict:
        out = self._fn(ctx)
        if inspect.isawaitable(out):
            out = _run_sync(out)
        return to_verdict(out)

    async def ajudge(self, ctx: StepContext) -> Verdict:
        if not self.native_async:
            return await asyncio.to_thread(self.judge, ctx)
        out = self._fn(ctx)
        if inspect.isawaitable(out):
            out = await out
        return to_verdict(out)

    def __repr__(self) -> str:
        return f"FunctionCritic({self.name!r})"


def _callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return str(name)


class ConstantCritic:
    """Always the same verdict: the simplest critic for tests, benchmarks and dry runs."""

    native_async = True
    inline = True  # no I/O: judged in the step, no worker thread

    def __init__(self, p_fail: float, *, rationale: str | None = None, name: str | None = None) -> None:
        self._verdict = Verdict(p_fail, rationale=rationale)
        self.name = name or f"constant-{self._verdict.p_fail:g}"

    def judge(self, ctx: StepContext) -> Verdict:
        return self._verdict

    async def ajudge(self, ctx: StepContext) -> Verdict:
        return self._verdict

    def __repr__(self) -> str:
        return f"ConstantCritic({self._verdict.p_fail!r}, name={self.name!r})"


class RuleCritic:
    """A critic from a predicate over the step: ``p_hi`` when ``predicate(ctx)`` is true, else ``p_lo``.

    Handy for demos and tests (e.g. "flag any step that calls the `delete` tool"). The predicate is plain sync code
    that looks at the step, so the guard calls it inline, in the step (``inline=False`` for a predicate that may
    block: it then runs in the guard's worker pool under the timeout, like any sync critic).
    """

    native_async = False

    def __init__(
        self,
        predicate: Callable[[StepContext], bool],
        *,
        p_hi: float = 0.9,
        p_lo: float = 0.1,
        rationale: str | None = None,
        name: str | None = None,
        inline: bool = True,
    ) -> None:
        if not callable(predicate):
            raise TypeError(f"RuleCritic needs a callable predicate, got {type(predicate).__name__}")
        if not (math.isfinite(p_lo) and math.isfinite(p_hi)) or p_lo > p_hi:
            raise ValueError(f"RuleCritic needs p_lo <= p_hi, got p_lo={p_lo!r}, p_hi={p_hi!r}")
        self._predicate = predicate
        self._hi = Verdict(p_hi, rationale=rationale)
        self._lo = Verdict(p_lo)
        self.name = name or f"rule-{_callable_name(predicate)}"
        self.inline = inline

    def judge(self, ctx: StepContext) -> Verdict:
        hit = self._predicate(ctx)
        if not isinstance(hit, bool):
            raise MalformedVerdictError(f"RuleCritic predicate must return a bool, got {type(hit).__name__}")
        return self._hi if hit else self._lo

    async def ajudge(self, ctx: StepContext) -> Verdict:
        return await asyncio.to_thread(self.judge, ctx)

    def __repr__(self) -> str:
        return f"RuleCritic({self.name!r}, p_hi={self._hi.p_fail}, p_lo={self._lo.p_fail})"


ThresholdCritic = RuleCritic
"""Alias of :class:`RuleCritic` (the issue names both)."""


def as_critic(obj: Critic | Callable[..., Any]) -> Critic:
    """Return ``obj`` if it already is a critic, else wrap a callable in :class:`FunctionCritic`."""
    if isinstance(obj, Critic):
        if not isinstance(obj.name, str) or not obj.name:
            raise TypeError(f"critic {obj!r} needs a non-empty str `name` (its identity, part of the guard key)")
        return obj
    if callable(obj):
        return FunctionCritic(obj)
    raise TypeError(f"expected a Critic or a callable(ctx) -> Verdict, got {type(obj).__name__}")
