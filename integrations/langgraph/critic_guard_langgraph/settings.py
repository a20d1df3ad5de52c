"""The one-object set-up: build the guard of a :class:`~critic_guard_langgraph.CriticGuardMiddleware` from keyword
settings, and refuse, at construction, a set-up that cannot work.

``CriticGuardMiddleware(critic, mode="pilot", tau=0.7, judge=..., store="sqlite:///guard.db")`` takes every field
of :class:`~critic_guard.config.GuardConfig` and of :class:`~critic_guard.policy.Policy` by name (a policy field
goes to the policy, any other to the guard's config; both validate as they always do, so a typo gets a
did-you-mean hint). ``CriticGuard`` stays the framework-neutral core: an advanced user passes one instead
(``CriticGuardMiddleware(guard)`` or ``guard=``), and then no guard setting may be given beside it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from critic_guard.config import GuardConfig
from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.types import Mode

__all__ = ["OUTCOMES", "POLICY_FIELDS", "build_guard", "check_outcomes", "middleware_guard"]

POLICY_FIELDS = frozenset(Policy.model_fields)
GUARD_FIELDS = frozenset(GuardConfig.model_fields)
MIDDLEWARE_ARGUMENTS = frozenset(
    {"judge", "outcomes", "shadow_tools", "fork_context", "arm", "stream_proposals", "telemetry", "guard"}
)
"""The middleware's own keyword arguments (named in the did-you-mean hint for a misspelt setting)."""
OUTCOMES = ("judge", "external")
"""Where a pilot's outcomes come from: the middleware's ``judge``, or the caller through ``guard.record_outcome``."""


def middleware_guard(
    critic: Any,
    guard: CriticGuard | None,
    settings: Mapping[str, Any],
    *,
    telemetry: Any,
    judge: object,
    outcomes: str | None,
) -> tuple[CriticGuard, bool]:
    """The middleware's guard, and whether the middleware built it (and so closes it).

    A ready :class:`CriticGuard` (as ``critic`` or ``guard=``) with nothing that configures a guard beside it, or one
    built from ``critic`` and ``settings`` (:func:`build_guard`). Refuses a pilot nothing would judge
    (:func:`check_outcomes`), closing a guard it built first.
    """
    if isinstance(critic, CriticGuard):
        if guard is not None:
            raise TypeError("pass the CriticGuard once: as the first argument or as guard=, not both")
        critic, guard = None, critic
    if guard is not None:
        extra = {**settings, "critic": critic, "telemetry": telemetry}
        named = sorted(key for key, value in extra.items() if value is not None or key in settings)
        if named:
            raise TypeError(
                f"{', '.join(named)}: these configure the guard, and a ready CriticGuard was given; set them on "
                "the CriticGuard, or drop guard= and let the middleware build it"
            )
        owns = False
    else:
        if critic is None:
            raise TypeError("CriticGuardMiddleware needs a critic: CriticGuardMiddleware(my_critic, mode=...)")
        guard = build_guard(critic, settings, telemetry=telemetry)
        owns = True
    try:
        check_outcomes(guard, judge, outcomes)
    except ValueError:
        if owns:
            guard.close()
        raise
    return guard, owns


def build_guard(critic: Any, settings: Mapping[str, Any], *, telemetry: Any = None) -> CriticGuard:
    """A :class:`CriticGuard` for ``critic`` from the middleware's keyword ``settings`` (see the module docstring).

    ``settings["store"]``, when given: a URL, None (persist nothing) or a :class:`~critic_guard.store.base.Store`
    (used, not closed, by the guard); absent, the config's default applies.
    """
    unknown = sorted(set(settings) - POLICY_FIELDS - GUARD_FIELDS)
    if unknown:
        known = sorted(
            POLICY_FIELDS
            | GUARD_FIELDS
            | {"judge", "outcomes", "shadow_tools", "fork_context", "arm", "stream_proposals", "telemetry"}
        )
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known settings: {', '.join(known)}"
        raise TypeError(f"CriticGuardMiddleware got an unknown setting {unknown[0]!r}{hint}")
    policy_fields = {k: v for k, v in settings.items() if k in POLICY_FIELDS}
    config = {k: v for k, v in settings.items() if k not in POLICY_FIELDS and k != "store"}
    if policy_fields:
        if "policy" in config:
            raise TypeError(
                f"give either policy=Policy(...) or its fields ({', '.join(sorted(policy_fields))}), not both"
            )
        config["policy"] = Policy.model_validate(policy_fields)
    extra = {"store": settings["store"]} if "store" in settings else {}
    if telemetry is not None:
        extra["telemetry"] = telemetry
    return CriticGuard(critic, **config, **extra)


def check_outcomes(guard: CriticGuard, judge: object, outcomes: str | None) -> None:
    """Refuse a pilot that could never complete a pair: modes ``pilot`` and ``auto`` compare outcomes, so they
    need a ``judge`` or the promise that outcomes come from outside (``outcomes="external"``)."""
    if outcomes is not None and outcomes not in OUTCOMES:
        raise ValueError(f"outcomes must be 'judge' or 'external', got {outcomes!r}")
    if judge is not None and outcomes == "external":
        raise ValueError("give a judge or outcomes='external' (outcomes recorded by guard.record_outcome), not both")
    if outcomes == "judge" and judge is None:
        raise ValueError("outcomes='judge' needs judge=(task, final_state) -> bool")
    mode = guard.config.mode
    if mode in (Mode.PILOT, Mode.AUTO) and judge is None and outcomes != "external":
        raise ValueError(
            f"mode {mode.value!r} compares outcomes of paired runs, and nothing would ever record one: pass "
            "judge=(task, final_state) -> bool, or outcomes='external' if you record them yourself with "
            "guard.record_outcome(run_id, success)"
        )
