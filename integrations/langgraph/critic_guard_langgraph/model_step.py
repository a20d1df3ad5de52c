"""One model node under the guard: a step's proposals (the first and any retries), and what the node returns.

Where the feedback goes. The text is a user message (a *guard note*, recognisable by its id, see
:func:`~critic_guard_langgraph.messages.is_guard_note`) that the model node returns ahead of the accepted proposal,
at the place where the model saw it: at the end of its input after a rollback, after the tool results for an
APPEND, after the answer for an APPEND on a final answer. Why persisted rather than shown once and dropped:

* the history is exactly what the model saw, so a transcript can be audited, and a run resumed or forked from
  any checkpoint (docs/pilot-design.md) continues from the same context;
* it is what :func:`~critic_guard_langgraph.graph.guard_graph` does for any graph, so both integrations behave
  alike.

A note never sits between an assistant tool call and its results: it is only added at the end of a history whose
tool calls are all answered (:func:`~critic_guard_langgraph.messages.note_index`); otherwise the intervention
happens silently and a warning is logged (create_agent never produces that case).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from langchain.agents.middleware.types import ExtendedModelResponse, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langgraph.types import Command

from critic_guard.guard import StepReview
from critic_guard.types import Action, Arm, StepContext
from critic_guard_langgraph._runs import action_of, logger
from critic_guard_langgraph.messages import NeutralHistory, make_note, note_index
from critic_guard_langgraph.run_state import RECORD, GuardRun, task_of
from critic_guard_langgraph.shadow import ShadowBranch
from critic_guard_langgraph.streaming import withdrawn_event

__all__ = ["ModelStep"]

R = TypeVar("R")


@dataclass(slots=True)
class ModelStep(Generic[R]):
    """One model node's bookkeeping.

    ``messages`` is the agent's history before this step; ``shown`` what the guard adds to it in this node (notes,
    and an answer kept by an APPEND on a final answer), ahead of the accepted proposal; ``announcements`` what stream
    consumers are told before the next model call (a withdrawn proposal's id, :mod:`.streaming`). ``record`` is a
    copy of the run's record, updated as the step goes and written back with the node's messages. ``branch`` is the
    shadow branch the run is (None for a production run).
    """

    request: ModelRequest[Any]
    record: GuardRun
    messages: Sequence[BaseMessage]
    branch: ShadowBranch | None
    shown: list[BaseMessage] = field(default_factory=list)
    announcements: list[dict[str, Any]] = field(default_factory=list)  # for stream consumers (see .streaming)

    @classmethod
    def open(cls, request: ModelRequest[Any], record: GuardRun, branch: ShadowBranch | None) -> ModelStep[R]:
        """The step of ``request`` in the run of ``record`` (copied), with a pending APPEND warning shown first."""
        step: ModelStep[R] = cls(request, cast("GuardRun", dict(record)), request.state["messages"], branch)
        warning = step.record["warning"]
        if warning:  # an APPEND at the previous step: shown after its tool results, ahead of this model call
            step.shown += _placeable(make_note(warning, _note_key(step.record)), step.messages)
            step.record["warning"] = None
        return step

    def frozen(self) -> ModelStep[R]:
        """A copy for a background verdict: the record as it is now, whatever the node does next."""
        return ModelStep(self.request, cast("GuardRun", dict(self.record)), self.messages, None)

    def model_request(self) -> ModelRequest[Any]:
        """The model's input: the request, with whatever the guard has shown in this step at its end."""
        if not self.shown:
            return self.request
        return self.request.override(messages=[*self.request.messages, *cast("list[AnyMessage]", self.shown)])

    def context(self, response: ModelResponse[R], histories: NeutralHistory) -> StepContext | None:
        """The critic's view of the proposal in ``response``, or None when there is no assistant message to judge."""
        proposal = _proposal(response)
        run_id = self.record["run_id"]
        if proposal is None or run_id is None:
            return None
        return StepContext(
            run_id=run_id,
            step=self.record["step"],
            messages=histories.view(run_id, [*self.messages, *self.shown, proposal]),
            task=task_of(self.record["task"], self.request.runtime),
            arm=Arm(self.record["arm"]),
        )

    def budget(self) -> tuple[int, int | None]:
        """(interventions so far, step of the last one), as the policy should see them."""
        return self.record["interventions"], self.record["last_intervention_step"]

    def apply(self, response: ModelResponse[R], review: StepReview | None) -> bool:
        """Apply the review of ``response``'s proposal; True when the model must be asked again."""
        record = self.record
        proposal = _proposal(response)
        action = action_of(review)
        if review is None or proposal is None or action is Action.NONE:
            record["step"] += 1
            return False
        step = record["step"]
        record["interventions"] += 1
        record["last_intervention_step"] = step
        feedback = review.decision.feedback
        note = None if feedback is None else make_note(feedback, _note_key(record))
        if action is Action.ROLLBACK:  # the proposal is dropped (stream consumers are told); the retry is the same step
            self.announcements.append(withdrawn_event(proposal.id, run_id=record["run_id"], step=step))
            self.shown += _placeable(note, [*self.messages, *self.shown])
            return True
        record["step"] = step + 1  # APPEND
        if proposal.tool_calls:  # the warning waits for the tool results (see open)
            record["warning"] = feedback
            return False
        kept = [*self.shown, *response.result]
        placed = _placeable(note, [*self.messages, *kept])
        if not placed:  # a silent warning on a final answer has nothing to show
            return False
        self.shown = [*kept, *placed]
        return True

    def result(self, response: ModelResponse[R]) -> ExtendedModelResponse[R]:
        """What the node returns: the notes and kept messages, the accepted proposal, and the updated record."""
        messages = [*self.shown, *response.result] if self.shown else response.result
        return ExtendedModelResponse(
            ModelResponse(result=messages, structured_response=response.structured_response),
            Command(update={RECORD: self.record}),
        )


def _proposal(response: ModelResponse[Any]) -> AIMessage | None:
    """The assistant message a model response proposes (with structured output a tool message may follow it)."""
    return next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)


def _note_key(record: GuardRun) -> str:
    """Unique per intervention: run, step, intervention count."""
    return f"{record['run_id']}-{record['last_intervention_step']}-{record['interventions']}"


def _placeable(note: HumanMessage | None, history: Sequence[BaseMessage]) -> list[HumanMessage]:
    """``[note]`` if it can go at the end of ``history`` without splitting a tool-call group, else ``[]``."""
    if note is None:
        return []
    if note_index(history) != len(history):
        logger.warning("critic-guard: the history ends inside a tool-call group; the note is not shown")
        return []
    return [note]
