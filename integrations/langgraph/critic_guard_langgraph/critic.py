"""``ChatModelCritic``: an LLM judge over any LangChain chat model that supports structured output.

The judge reads the task, the trajectory so far and the proposed step (rendered as a plain-text transcript, so the
judge model does not mistake itself for the agent and try to continue the conversation) and answers with a
structured :class:`CriticOutput`: ``p_fail`` in [0, 1] and a short rationale. Anything else (no structured answer,
a probability out of range) raises, and the guard records a critic error and does not intervene (fail open).

A raw LLM probability is rarely calibrated; calibrate it on labelled runs before trusting ``tau``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from critic_guard.critics import MalformedVerdictError
from critic_guard.types import Message, StepContext, Verdict

__all__ = ["DEFAULT_PROMPT", "ChatModelCritic", "CriticOutput", "render_trajectory"]

DEFAULT_PROMPT = """\
You are a critic reviewing an AI agent while it works on a task with tools.

You see the task, the agent's trajectory so far (its messages, the tool calls it made and the tool results) and \
the step it proposes next. The proposed step has NOT been executed yet.

Predict whether the agent's run will FAIL, meaning it will not accomplish the task correctly, if it takes the \
proposed step and continues as it has. Consider: is the proposed step sensible for the task, does it repeat \
earlier mistakes or loop, does it ignore information from tool results, does it act on wrong assumptions, is a \
final answer correct and complete?

Answer with p_fail, the probability in [0, 1] that the run fails (0 = certainly succeeds, 1 = certainly fails; \
use the whole range, 0.5 means you cannot tell), and a rationale of one or two sentences that the agent could act \
on."""
"""The default system prompt of :class:`ChatModelCritic`."""


class CriticOutput(BaseModel):
    """Your prediction about the agent run under review."""

    p_fail: float = Field(ge=0.0, le=1.0, description="probability in [0, 1] that the agent's run will fail")
    rationale: str = Field(description="one or two sentences explaining the prediction")


class ChatModelCritic:
    """A critic that asks a chat model, with structured output, how likely the run is to fail.

    Args:
        model: any LangChain chat model implementing ``with_structured_output`` (tool calling or native JSON).
        prompt: the system prompt; default :data:`DEFAULT_PROMPT`.
        name: the critic's identity in the guard key; default ``chat-model:<model>:<prompt hash>``, so changing
            the model or the prompt starts fresh evidence.
        max_chars: longest text kept per message in the transcript (longer text is cut in the middle), which
            bounds the judge's prompt on long tool outputs.
    """

    native_async = True
    # A chat model's async client is bound to the loop it first ran on (langchain-openai even shares one
    # httpx.AsyncClient per base URL across the process, the agent's model included), so the judge runs on the
    # caller's loop, not the guard's: its deadline still holds (the step stops waiting at the deadline).
    caller_loop = True

    def __init__(
        self, model: BaseChatModel, *, prompt: str | None = None, name: str | None = None, max_chars: int = 4000
    ) -> None:
        if not isinstance(model, BaseChatModel):
            raise TypeError(f"ChatModelCritic needs a LangChain BaseChatModel, got {type(model).__name__}")
        if max_chars < 100:
            raise ValueError(f"max_chars must be at least 100, got {max_chars}")
        self.prompt = DEFAULT_PROMPT if prompt is None else prompt
        if not self.prompt.strip():
            raise ValueError("the critic prompt must not be empty")
        self.max_chars = max_chars
        self.name = name or f"chat-model:{_model_id(model)}:{hashlib.sha256(self.prompt.encode()).hexdigest()[:8]}"
        self._judge = model.with_structured_output(CriticOutput)

    def messages(self, ctx: StepContext) -> list[BaseMessage]:
        """What the judge model is asked for ``ctx``."""
        return [SystemMessage(self.prompt), HumanMessage(render_trajectory(ctx, max_chars=self.max_chars))]

    def judge(self, ctx: StepContext) -> Verdict:
        return _verdict(self._judge.invoke(self.messages(ctx)))

    async def ajudge(self, ctx: StepContext) -> Verdict:
        return _verdict(await self._judge.ainvoke(self.messages(ctx)))

    def __repr__(self) -> str:
        return f"ChatModelCritic({self.name!r})"


def _verdict(out: object) -> Verdict:
    if not isinstance(out, CriticOutput):
        raise MalformedVerdictError(f"the judge model gave no structured verdict (got {type(out).__name__})")
    return Verdict(out.p_fail, rationale=out.rationale.strip() or None)


def _model_id(model: BaseChatModel) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def render_trajectory(ctx: StepContext, *, max_chars: int = 4000) -> str:
    """The judge's view of a step as plain text: task, numbered trajectory, and the proposed step."""
    history, proposed = ctx.messages[:-1], ctx.proposed
    lines = ["# Task", _task_text(ctx.task, history, max_chars), "", "# Trajectory so far (oldest first)"]
    lines += [_render(i, m, max_chars) for i, m in enumerate(history, start=1)] or ["(empty)"]
    lines += ["", f"# Proposed next step (step {ctx.step}, not executed yet)", _render(None, proposed, max_chars)]
    return "\n".join(lines)


def _task_text(task: Mapping[str, Any], history: Sequence[Message], max_chars: int) -> str:
    text = task.get("input")
    if not isinstance(text, str):
        text = next((m.get("content", "") for m in history if m.get("role") == "user"), "")
    extra = {k: v for k, v in task.items() if k != "input"}
    if extra:
        text = f"{text}\n(task metadata: {json.dumps(extra, sort_keys=True, default=str)})"
    return _cut(text or "(not given)", max_chars)


def _render(index: int | None, message: Message, max_chars: int) -> str:
    role = message.get("role", "?")
    head = f"[{index}] " if index is not None else ""
    if role == "tool":
        label = f"TOOL RESULT ({message.get('name') or 'tool'}, call {message.get('tool_call_id')})"
    else:
        label = str(role).upper()
    out = [f"{head}{label}: {_cut(str(message.get('content') or ''), max_chars)}"]
    for call in message.get("tool_calls") or ():
        args = json.dumps(call.get("arguments", {}), sort_keys=True, default=str)
        out.append(f"    -> calls tool {call.get('name')}({_cut(args, max_chars)}) [call {call.get('id')}]")
    return "\n".join(out)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    half = (max_chars - 20) // 2
    return f"{text[:half]} [...{len(text) - 2 * half} chars cut...] {text[-half:]}"
