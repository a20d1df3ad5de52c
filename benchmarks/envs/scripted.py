"""The scripted agent and critic of the real-environment benchmarks: the env's oracle with injected mistakes.

Why scripted: the question is whether the pilot *decides* right, with how many agent calls, on environments nobody
here wrote; a real LLM would make the run slow, paid and irreproducible. The agent's mistakes and the critic's noise
are knobs, while success is judged by the environment's own checker, so what a mistake costs (a TextWorld detour,
a fatal ``eat``, a BFCL write with a wrong argument) is the environment's business, not ours.

:class:`OracleAgent` is a :class:`~critic_guard_langgraph.testing.ScriptedChatModel` policy. At each call it takes
the environment's next correct action (``env.oracle_next()``; ``None`` means "end the turn") or, with probability
``mistake_rate``, a plausible wrong one (TextWorld: another admissible command; BFCL: the oracle call with one
argument perturbed, or another tool of the task). Its draws are a pure function of the input messages and the task
seed, so a shadow branch that shares a prefix with production shares its continuation distribution, and a retry
after a rollback (whose input differs by the guard's note) is a fresh draw.

After a rollback the agent is told its step was withdrawn and asked for a different one. With probability
``comply`` it avoids the withdrawn action (recomputed: it is the agent's own reply to the input without the note):
a wrong step becomes the oracle's, and a *right* step the critic flagged by mistake becomes a wrong one. That is how
an intervention recovers and disrupts runs here.

:class:`OracleCritic` knows the oracle too and scores a proposal with binormal noise: a latent score ``N(0, 1)``,
shifted by ``delta = sqrt(2) * Phi^-1(auroc)`` for a wrong proposal, so its AUROC at telling wrong steps from right
ones is ``auroc``; ``p_fail = Phi(score - center)``. ``center`` places the critic's scale: with the paper's
``tau = 0.6``, the defaults (AUROC 0.9, center 1.5) flag 4 % of right steps and 52 % of wrong ones, a critic that
speaks up rarely, as one must when most steps are right.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from benchmarks.envs.agent import current_context
from benchmarks.envs.base import Environment, ToolCall
from benchmarks.envs.bfcl_env import BfclEnv
from benchmarks.envs.textworld_env import TextWorldEnv
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph.messages import is_guard_note
from critic_guard_langgraph.testing import digest_messages, tool_call

_NORMAL = NormalDist()
DONE = "Done."
"""The agent's answer when it ends a turn."""


def _rng(*parts: object) -> random.Random:
    return random.Random(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class OracleAgent:
    """The scripted agent (see the module docstring). Use as ``ScriptedChatModel(policy=OracleAgent(...))``."""

    mistake_rate: float = 0.1
    comply: float = 0.8

    def __call__(self, messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
        """One model call: counted on the run's context; ``rng`` is not used (the draws key on the task seed too)."""
        context = current_context()
        context.model_calls += 1
        return _message(self.action(context.env, messages, context.seed))

    def action(self, env: Environment, messages: Sequence[BaseMessage], seed: int) -> ToolCall | None:
        """The action for this input: a tool call, or ``None`` to answer without one (end the turn)."""
        draw = _rng("agent", seed, digest_messages(messages))
        oracle = env.oracle_next()
        proposal = oracle
        if draw.random() < self.mistake_rate:
            proposal = mistake(env, oracle, draw) or oracle
        if not messages or not is_guard_note(messages[-1]):
            return proposal
        withdrawn = self.action(env, messages[:-1], seed)
        if proposal != withdrawn or draw.random() >= self.comply:
            return proposal
        if withdrawn != oracle:
            return oracle
        return mistake(env, oracle, draw)  # None when nothing else is possible: it insists


def _message(action: ToolCall | None) -> AIMessage | str:
    return DONE if action is None else tool_call(action.name, **action.args)


def mistake(env: Environment, oracle: ToolCall | None, rng: random.Random) -> ToolCall | None:
    """A plausible wrong action in this state, or ``None`` if the environment offers none."""
    if isinstance(env, TextWorldEnv):
        wrong = [command for command in env.admissible_commands if oracle is None or command != oracle.args["text"]]
        return ToolCall("command", {"text": rng.choice(wrong)}) if wrong and not env.done else None
    if isinstance(env, BfclEnv):
        if oracle is not None and oracle.args and rng.random() < 0.5:
            return _perturbed(oracle, rng)
        return _other_tool(env, oracle, rng)
    raise TypeError(f"no mistakes are scripted for {type(env).__name__}")


def _perturbed(call: ToolCall, rng: random.Random) -> ToolCall:
    """The call with one argument changed as a careless model would: a typo, an off-by-one, a flipped flag."""
    key = rng.choice(sorted(call.args))
    return ToolCall(call.name, {**call.args, key: _perturb(call.args[key], rng)})


def _perturb(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice((-1, 1))
    if isinstance(value, float):
        return round(value * rng.choice((0.9, 1.1)) + 1.0, 2)
    if isinstance(value, str):
        return value[:-1] if len(value) > 1 and rng.random() < 0.5 else value + "s"
    if isinstance(value, list):
        return value[:-1] if value else ["x"]
    return {}  # a dict (or None): emptied


def _other_tool(env: BfclEnv, oracle: ToolCall | None, rng: random.Random) -> ToolCall:
    """Another tool of the task, its required arguments taken from the oracle's where the names match."""
    given = {} if oracle is None else oracle.args
    tools = [tool for tool in env.tools if oracle is None or tool.name != oracle.name]
    spec = rng.choice(tools)
    properties: Mapping[str, Any] = spec.parameters.get("properties", {})
    args = {
        name: given[name] if name in given else _placeholder(properties.get(name, {}))
        for name in spec.parameters.get("required", ())
    }
    return ToolCall(spec.name, args)


def _placeholder(schema: Mapping[str, Any]) -> Any:
    placeholders: dict[str, Any] = {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    return placeholders.get(str(schema.get("type")), "report")


@dataclass(frozen=True, slots=True)
class OracleCritic:
    """The noisy critic (see the module docstring): AUROC ``auroc`` at telling wrong proposals from right ones."""

    auroc: float = 0.9
    center: float = 1.5
    name: str = "oracle-critic"

    def __post_init__(self) -> None:
        if not 0.5 <= self.auroc < 1.0:
            raise ValueError(f"auroc must be in [0.5, 1), got {self.auroc}")

    @property
    def delta(self) -> float:
        return 2**0.5 * _NORMAL.inv_cdf(self.auroc)

    def __call__(self, ctx: StepContext) -> Verdict:
        return self.judge(ctx, wrong=proposed_action(ctx) != current_context().env.oracle_next())

    def judge(self, ctx: StepContext, *, wrong: bool) -> Verdict:
        """The verdict on a proposal known to be wrong or right; the noise is a function of the messages and seed."""
        messages = [{k: v for k, v in message.items() if k != "id"} for message in ctx.messages]
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
        score = _rng("critic", ctx.task.get("seed"), digest).gauss(0.0, 1.0) + self.delta * wrong
        return Verdict(_NORMAL.cdf(score - self.center), label="wrong" if wrong else "right")


def proposed_action(ctx: StepContext) -> ToolCall | None:
    """The proposed step as an action: its first tool call, or ``None`` for an answer."""
    calls = ctx.proposed.get("tool_calls") or []
    return ToolCall(calls[0]["name"], dict(calls[0]["arguments"])) if calls else None
