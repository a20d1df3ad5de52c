"""``guard_graph``: a critic-guard around any compiled LangGraph graph that has a checkpointer.

For graphs not built with ``create_agent`` there is no middleware hook, so the wrapper drives the graph from the
outside with LangGraph's own breakpoints: it runs the graph with ``interrupt_after=judge_after``; each time a judged
node has produced an assistant message, it judges that message (its tool calls have not run: the tools are a later
node) and then

* **ROLLBACK**: resumes from the checkpoint *before* the judged node ran (the snapshot's ``parent_config``), with
  the feedback added to the state there as a user message (a fork of the thread: the withdrawn message is not in
  the new branch's history, and the thread's head moves to the new branch). Silent rollback resumes from that
  checkpoint unchanged.
* **APPEND**: lets the graph continue and stops again just *before* the next judged node runs
  (``interrupt_before``), which is after the tool results, to add the warning there. If the graph would end after
  the judged node, it re-enters that node once with the warning added (``Command(goto=node)``).

Here notes are persisted in the state: a compiled graph offers no per-call hook to add them ephemerally. They are
placed only at those two points, which in a model -> tools -> model loop are never between a tool call and its
results, and they carry ids that :func:`~critic_guard_langgraph.messages.is_guard_note` recognises.

A run is one call of :meth:`GuardedGraph.invoke` / :meth:`GuardedGraph.ainvoke` on a thread. If a node calls
``interrupt()``, the call returns LangGraph's usual ``__interrupt__`` output and the run stays open; calling again on
the same thread with ``Command(resume=...)`` continues that run (in this process).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphRecursionError
from langgraph.types import Command

from critic_guard.types import Action, Arm, StepContext
from critic_guard_langgraph._runs import (
    action_of,
    areview_or_none,
    is_off,
    review_or_none,
    run_arm,
    safely,
    task_metadata,
)
from critic_guard_langgraph.messages import make_note, to_neutral

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.pregel import Pregel
    from langgraph.types import StateSnapshot

    from critic_guard.guard import CriticGuard, StepReview

__all__ = ["GuardedGraph", "guard_graph"]

_INTERRUPT = "__interrupt__"
_MAX_PASSES = 10_000  # when neither the call nor the graph sets a recursion limit


def guard_graph(
    graph: Pregel[Any, Any, Any, Any],
    guard: CriticGuard,
    *,
    judge_after: Sequence[str],
    messages_key: str = "messages",
    arm: Arm | None = None,
) -> GuardedGraph:
    """Wrap a compiled graph so that the guard judges the output of the ``judge_after`` nodes.

    Args:
        graph: a compiled graph with a checkpointer (rollback resumes from a checkpoint).
        guard: the guard (critic, policy, mode, store).
        judge_after: the nodes that propose steps, typically the node calling the model.
        messages_key: the state key holding the message list (with an ``add_messages`` reducer).
        arm: the arm runs belong to. Default: the arm the guard serves now (``guard.serve_arm()``: treatment in
            mode ``on``, control in ``observe``, ``config.serve`` in a pilot).
    """
    return GuardedGraph(graph, guard, judge_after=judge_after, messages_key=messages_key, arm=arm)


@dataclass
class _Run:
    """One run's counters, kept by the wrapper between the graph's stops."""

    run_id: str
    arm: Arm
    task: dict[str, Any]
    step: int = 0
    interventions: int = 0
    last_intervention: int | None = None
    warning: str | None = None  # an APPEND warning waiting for the next judged node
    passes: int = 0  # calls of the graph so far


@dataclass
class _Pass:
    """What one streaming pass of the graph produced."""

    latest: Any = None  # the last "values" chunk, i.e. what invoke() would return
    interrupts: list[Any] = field(default_factory=list)  # interrupt() calls inside nodes
    stopped: bool = False  # stopped at one of our breakpoints
    ran: list[tuple[str, Any]] = field(default_factory=list)  # (node, update) in order

    def take(self, chunk: tuple[str, Any]) -> None:
        mode, payload = chunk
        if mode == "values":
            self.latest = payload
            return
        if not isinstance(payload, Mapping):
            return
        for node, update in payload.items():
            if node == _INTERRUPT:
                self.stopped = True
                self.interrupts.extend(update)
            else:
                self.ran.append((node, update))


@dataclass(frozen=True)
class _Next:
    """How to continue after a stop: graph input, config, and the breakpoints before judged nodes."""

    input: Any
    config: RunnableConfig
    stop_before: bool = False


class GuardedGraph:
    """A compiled graph driven step by step under a guard; use :func:`guard_graph` to build one."""

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        guard: CriticGuard,
        *,
        judge_after: Sequence[str],
        messages_key: str = "messages",
        arm: Arm | None = None,
    ) -> None:
        if not isinstance(getattr(graph, "checkpointer", None), BaseCheckpointSaver):
            raise ValueError(
                "guard_graph needs a graph compiled with a checkpointer (e.g. graph.compile(checkpointer="
                "InMemorySaver())): a rollback resumes from the checkpoint taken before the judged node ran"
            )
        if isinstance(judge_after, str):
            judge_after = [judge_after]
        unknown = sorted(set(judge_after) - set(graph.nodes))
        if not judge_after or unknown:
            raise ValueError(
                f"judge_after must name nodes of the graph; unknown: {unknown or '(empty list)'}; "
                f"nodes: {sorted(n for n in graph.nodes if not n.startswith('__'))}"
            )
        self.graph = graph
        self.guard = guard
        self.judge_after = list(judge_after)
        self.messages_key = messages_key
        self.arm = arm
        self._open: dict[str, _Run] = {}  # thread id -> run interrupted by a node's interrupt()

    # -- public API ---------------------------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig, *, context: Any = None) -> Any:
        """Run the graph on ``config``'s thread under the guard; returns what ``graph.invoke`` would return."""
        thread = self._thread(config)
        if is_off(self.guard):
            return self.graph.invoke(input, config, context=context)
        run = self._resume_or_start(thread, input, context)
        step = _Next(input, config, stop_before=run.warning is not None)  # (a resumed run may owe a warning)
        head = _head(config)
        latest: Any = None
        try:
            while True:
                self._count_pass(run, config)
                result = _Pass()
                for chunk in self.graph.stream(step.input, step.config, **self._stream_kwargs(step, context)):
                    result.take(chunk)
                latest = result.latest if result.latest is not None else latest
                if result.interrupts:
                    return self._pause(thread, run, latest, result.interrupts)
                if not result.stopped:
                    break
                snapshot = self.graph.get_state(head)
                next_step = self._before_judged_node(run, snapshot, result)
                if next_step is None:
                    ctx, node = self._judgeable(run, snapshot, result)
                    review = review_or_none(self.guard, ctx, run.interventions, run.last_intervention) if ctx else None
                    plan = self._plan(run, snapshot, node, review)
                    next_step = self._execute(plan, head)
                step = next_step
        except BaseException:
            self._end(run, "failed")
            raise
        self._end(run, "completed")
        return latest

    async def ainvoke(self, input: Any, config: RunnableConfig, *, context: Any = None) -> Any:
        """Async :meth:`invoke`."""
        thread = self._thread(config)
        if is_off(self.guard):
            return await self.graph.ainvoke(input, config, context=context)
        run = self._resume_or_start(thread, input, context)
        step = _Next(input, config, stop_before=run.warning is not None)  # (a resumed run may owe a warning)
        head = _head(config)
        latest: Any = None
        try:
            while True:
                self._count_pass(run, config)
                result = _Pass()
                async for chunk in self.graph.astream(step.input, step.config, **self._stream_kwargs(step, context)):
                    result.take(chunk)
                latest = result.latest if result.latest is not None else latest
                if result.interrupts:
                    return self._pause(thread, run, latest, result.interrupts)
                if not result.stopped:
                    break
                snapshot = await self.graph.aget_state(head)
                next_step = await self._abefore_judged_node(run, snapshot, result)
                if next_step is None:
                    ctx, node = self._judgeable(run, snapshot, result)
                    review = (
                        await areview_or_none(self.guard, ctx, run.interventions, run.last_intervention)
                        if ctx
                        else None
                    )
                    plan = self._plan(run, snapshot, node, review)
                    next_step = await self._aexecute(plan, head)
                step = next_step
        except BaseException:
            self._end(run, "failed")
            raise
        self._end(run, "completed")
        return latest

    # -- runs ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _thread(config: RunnableConfig) -> str:
        thread = (config or {}).get("configurable", {}).get("thread_id")
        if thread is None:
            raise ValueError("a guarded graph needs config={'configurable': {'thread_id': ...}} (it checkpoints)")
        return str(thread)

    def _resume_or_start(self, thread: str, input: Any, context: Any) -> _Run:
        open_run = self._open.pop(thread, None)
        if open_run is not None:
            if isinstance(input, Command) and input.resume is not None:
                return open_run
            self._end(open_run, "abandoned")
        messages = self._messages(input) if isinstance(input, Mapping) else []
        arm = run_arm(self.guard, self.arm)
        task = task_metadata(messages, context)
        run_id = safely("start_run", self.guard.start_run, task=task, arm=arm, background=True, default=None)
        return _Run(run_id=run_id or "", arm=arm, task=task)

    def _count_pass(self, run: _Run, config: RunnableConfig) -> None:
        """LangGraph's recursion limit holds per call of the graph, and the wrapper calls it once per stop, so the
        same limit also bounds the number of calls (each runs at least one step): an endless loop still ends."""
        limit = config.get("recursion_limit") or (self.graph.config or {}).get("recursion_limit") or _MAX_PASSES
        run.passes += 1
        if run.passes > limit:
            raise GraphRecursionError(
                f"guarded graph: recursion limit of {limit} reached (calls of the graph between the guard's stops)"
            )

    def _pause(self, thread: str, run: _Run, latest: Any, interrupts: list[Any]) -> Any:
        self._open[thread] = run
        return {**latest, _INTERRUPT: interrupts} if isinstance(latest, Mapping) else {_INTERRUPT: interrupts}

    def _end(self, run: _Run, status: str) -> None:
        if run.run_id:
            safely("end_run", self.guard.end_run, run.run_id, status=status, background=True, default=None)

    # -- one stop -----------------------------------------------------------------------------------------------

    def _stream_kwargs(self, step: _Next, context: Any) -> dict[str, Any]:
        return {
            "context": context,
            "stream_mode": ["updates", "values"],
            "interrupt_after": self.judge_after,
            "interrupt_before": self.judge_after if step.stop_before else None,
        }

    def _messages(self, values: Mapping[str, Any]) -> list[BaseMessage]:
        messages = values.get(self.messages_key) or []
        if isinstance(messages, BaseMessage):
            return [messages]
        return [m for m in messages if isinstance(m, BaseMessage)]

    def _warning_due(self, run: _Run, snapshot: StateSnapshot, result: _Pass) -> bool:
        """Stopped just before a judged node, with an APPEND warning to show it."""
        judged_ran = any(node in self.judge_after for node, _ in result.ran)
        return run.warning is not None and not judged_ran and bool(set(snapshot.next) & set(self.judge_after))

    def _before_judged_node(self, run: _Run, snapshot: StateSnapshot, result: _Pass) -> _Next | None:
        if not self._warning_due(run, snapshot, result):
            return None
        assert run.warning is not None
        config = self.graph.update_state(snapshot.config, {self.messages_key: [self._note(run, run.warning)]})
        run.warning = None
        return _Next(None, config)

    async def _abefore_judged_node(self, run: _Run, snapshot: StateSnapshot, result: _Pass) -> _Next | None:
        if not self._warning_due(run, snapshot, result):
            return None
        assert run.warning is not None
        config = await self.graph.aupdate_state(snapshot.config, {self.messages_key: [self._note(run, run.warning)]})
        run.warning = None
        return _Next(None, config)

    def _judgeable(self, run: _Run, snapshot: StateSnapshot, result: _Pass) -> tuple[StepContext | None, str]:
        """The step to judge: the last assistant message a judged node wrote in this pass, as the critic sees it."""
        for node, update in reversed(result.ran):
            if node not in self.judge_after:
                continue
            written = [m for m in self._update_messages(update) if isinstance(m, AIMessage)]
            if not written or not run.run_id:
                return None, node
            history = self._messages(snapshot.values)
            end = next((i for i in range(len(history) - 1, -1, -1) if history[i].id == written[-1].id), None)
            if end is None:
                return None, node
            ctx = StepContext(
                run_id=run.run_id,
                step=run.step,
                messages=tuple(to_neutral(history[: end + 1])),
                task=run.task,
                arm=run.arm,
            )
            return ctx, node
        return None, ""

    def _update_messages(self, update: Any) -> Iterator[BaseMessage]:
        for part in update if isinstance(update, list) else [update]:
            if isinstance(part, Mapping):
                yield from self._messages(part)

    def _plan(self, run: _Run, snapshot: StateSnapshot, node: str, review: StepReview | None) -> _Plan:
        """Update the run's counters for a reviewed step and say how the graph continues."""
        action = action_of(review)
        if review is None or action is Action.NONE:
            run.step += 1
            return _Plan("continue")
        feedback = review.decision.feedback
        run.interventions += 1
        run.last_intervention = run.step
        if action is Action.ROLLBACK:
            if snapshot.parent_config is None:
                raise RuntimeError("cannot roll back: the judged node's checkpoint has no parent")
            return _Plan("fork", snapshot.parent_config, self._note(run, feedback) if feedback else None)
        run.step += 1
        if feedback is None:
            return _Plan("continue")
        if snapshot.next:
            run.warning = feedback
            return _Plan("continue", stop_before=True)
        return _Plan("reenter", note=self._note(run, feedback), node=node)

    def _note(self, run: _Run, text: str) -> BaseMessage:
        return make_note(text, f"{run.run_id}-{run.step}-{run.interventions}")

    def _execute(self, plan: _Plan, config: RunnableConfig) -> _Next:
        if plan.kind == "fork":
            assert plan.config is not None
            fork = plan.config
            if plan.note is not None:
                fork = self.graph.update_state(fork, {self.messages_key: [plan.note]})
            return _Next(None, fork)
        return self._continue(plan, config)

    async def _aexecute(self, plan: _Plan, config: RunnableConfig) -> _Next:
        if plan.kind == "fork":
            assert plan.config is not None
            fork = plan.config
            if plan.note is not None:
                fork = await self.graph.aupdate_state(fork, {self.messages_key: [plan.note]})
            return _Next(None, fork)
        return self._continue(plan, config)

    def _continue(self, plan: _Plan, config: RunnableConfig) -> _Next:
        if plan.kind == "reenter":
            return _Next(Command(update={self.messages_key: [plan.note]}, goto=plan.node), config)
        return _Next(None, config, stop_before=plan.stop_before)


def _head(config: RunnableConfig) -> RunnableConfig:
    """``config`` without a checkpoint id: after the first pass the wrapper follows the thread's latest checkpoint."""
    configurable = {k: v for k, v in config.get("configurable", {}).items() if k != "checkpoint_id"}
    return {**config, "configurable": configurable}


@dataclass(frozen=True)
class _Plan:
    """The continuation chosen for a reviewed step (executed by the sync or async driver)."""

    kind: str  # "continue" | "fork" | "reenter"
    config: RunnableConfig | None = None
    note: BaseMessage | None = None
    node: str = ""
    stop_before: bool = False
