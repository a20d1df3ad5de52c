"""Pilot forking in a ``create_agent`` agent: at a production run's first flag, shadow branches from its checkpoint.

What forks, with which arm, pair ids and decision at the fork is the core's plan
(:func:`critic_guard.fork_plan.plan_forks`); this module finds the first flag, the fork point and the running graph,
and submits the planned branches (docs/pilot-design.md, "Integration side").

The fork point is the checkpoint the model node runs from (the state before this step's model call), and a branch
gets the proposal under judgement: it re-enters the model node, takes production's proposal instead of sampling a
new one (a second sample would break the shared prefix, docs/pilot-design.md), applies its arm's planned decision to
it, and runs on by itself from there. A branch copies the graph state, not the world: the middleware's own
``wrap_tool_call`` lets a branch run only the tools declared in ``shadow_tools`` and stops it before any other (deny
by default, :mod:`critic_guard_langgraph.shadow`); a stopped branch raises again at its next model call, and its
runner excludes the pair (docs/pilot-design.md, "What runs in a shadow branch").
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware.types import ModelRequest, ModelResponse
from langgraph.pregel import Pregel

from critic_guard.fork_plan import BranchPlan, fork_step_review, open_unflagged_pair, plan_forks
from critic_guard.guard import CriticGuard, StepReview
from critic_guard.types import Arm, Mode, Verdict
from critic_guard_langgraph._runs import logger, safely
from critic_guard_langgraph.fork import ForkError, check_durability
from critic_guard_langgraph.model_step import ModelStep
from critic_guard_langgraph.run_state import GuardRun, task_of
from critic_guard_langgraph.runner import ForkPoint, ShadowRunner
from critic_guard_langgraph.running_graph import RunningGraphs
from critic_guard_langgraph.shadow import ShadowBranch, ShadowTools, tool_names

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

__all__ = ["PilotForks", "forks"]


def forks(guard: CriticGuard) -> bool:
    """Whether runs under ``guard`` may fork shadow branches (modes pilot and auto, fork design): the only case with
    branch bookkeeping, and the only runs the tool gate acts on."""
    return guard.config.mode in (Mode.PILOT, Mode.AUTO) and guard.config.design == "fork"


class PilotForks:
    """The forks of one middleware's runs. ``owner`` is the middleware (the running graph is the one that holds
    it, :mod:`.running_graph`); ``runner`` runs the branches (None when the guard never forks)."""

    def __init__(
        self,
        owner: object,
        guard: CriticGuard,
        runner: ShadowRunner | None,
        shadow_tools: ShadowTools,
        *,
        context_forked: bool,
    ) -> None:
        self.guard = guard
        self.runner = runner
        self.graphs = RunningGraphs(owner)
        self._shadow_tools = shadow_tools
        self._context_forked = context_forked  # a fork_context copies each branch's world
        self._tools_seen: set[str] = set()  # tools already checked for the log-once warning about branch stops
        self._tools_lock = threading.Lock()

    @property
    def piloting(self) -> bool:
        """Whether runs may fork (see :func:`forks`)."""
        return forks(self.guard)

    def branch_of(self, request: ModelRequest[Any], branch: ShadowBranch | None) -> ShadowBranch | None:
        """At a model call: a stopped branch raises again (another middleware may have swallowed its stop: no more
        work); a production run's tools are checked once for the log-once warning about branch stops."""
        if branch is not None:
            branch.stop.check()
        else:
            self._warn_stopping_tools(request)
        return branch

    def _warn_stopping_tools(self, request: ModelRequest[Any]) -> None:
        """Log once per tool which of the agent's tools will stop shadow branches (undeclared in ``shadow_tools``)."""
        names = tool_names(request.tools)
        if self._tools_seen.issuperset(names):
            return
        with self._tools_lock:
            new = [name for name in names if name not in self._tools_seen]
            self._tools_seen.update(new)
        stopping = self._shadow_tools.stoppers(new, fork_context=self._context_forked)
        if stopping:
            logger.warning(
                "critic-guard: shadow branches of this pilot stop before these tools, and their pairs are excluded: "
                "%s. Declare each tool that is safe to run in a branch: CriticGuardMiddleware(guard, shadow_tools="
                "{name: READ_ONLY | FORKED | ToolSafety(emulate=...)}) (docs/pilot-design.md)",
                ", ".join(f"{name} ({why})" for name, why in stopping.items()),
            )

    def first_flag(
        self,
        step: ModelStep[Any],
        review: StepReview | None,
        proposal: ModelResponse[Any],
        config: Any,
        *,
        asynchronous: bool,
    ) -> None:
        """At a production run's first flag in a pilot: fork the branches the core plans (an A/B branch of the other
        arm; for ``aa_fraction`` of runs an A/A branch of the served arm).

        The run remembers its first flag (``flag_step``) whether or not it forked, so that it neither forks twice
        nor counts as never flagged.
        """
        record = step.record
        if not self.piloting or step.branch is not None or review is None or not review.decision.flagged:
            return
        if record.get("flag_step") is not None:
            return
        record["flag_step"] = review.step
        plans = plan_forks(self.guard, review, Arm(record["arm"]), step.budget())
        if not plans:
            return
        runtime = step.request.runtime
        where = self.fork_point(runtime, config)
        for plan in plans:
            self._fork(plan, record, review, proposal, where, runtime, asynchronous)

    def fork_point(self, runtime: Runtime[Any], config: Any) -> tuple[ForkPoint, Pregel[Any, Any, Any, Any]]:
        """Where a branch of this step forks (the checkpoint the model node runs from) and the graph to resume; raises
        :class:`ForkError` when the run cannot be forked (no checkpointer, no thread, ``durability="exit"``)."""
        check_durability(config)
        graph = self.graphs.running(config, runtime.store)  # the agent, with this run's own checkpointer
        info = runtime.execution_info
        if info is None or info.thread_id is None:
            raise ForkError("a pilot forks from checkpoints: run the agent on a thread (configurable.thread_id)")
        return ForkPoint(info.thread_id, info.checkpoint_id, info.task_id, config.get("recursion_limit")), graph

    def _fork(
        self,
        plan: BranchPlan,
        record: GuardRun,
        review: StepReview,
        proposal: ModelResponse[Any],
        where: tuple[ForkPoint, Pregel[Any, Any, Any, Any]],
        runtime: Runtime[Any],
        asynchronous: bool,
    ) -> None:
        """Start one planned shadow branch from the fork point (resuming the running graph given with it).

        The branch starts only if its run and pair are handed to the guard's writer thread (which writes them ahead
        of every write of the branch): ``begin`` never raises and never touches the store on the user's path, and
        counts a fork it refuses.
        """
        fork, graph = where
        task = task_of(record["task"], runtime)
        if not plan.begin(self.guard, task=task, fork_checkpoint_id=fork.checkpoint_id, background=True):
            return
        verdict = review.verdict
        shadow = ShadowBranch(
            pair_id=plan.pair_id,
            run_id=plan.branch_run_id,
            arm=plan.arm,
            fork_step=plan.fork_step,
            action=plan.decision.action,
            feedback=plan.decision.feedback,
            p_fail=None if verdict is None else verdict.p_fail,
            rationale=None if verdict is None else verdict.rationale,
            label=None if verdict is None else verdict.label,
            proposal=proposal,
        )
        runner = self.runner
        assert runner is not None  # made for modes pilot and auto
        if asynchronous:
            runner.asubmit(shadow, fork, task=task, context=runtime.context, graph=graph)
        else:
            runner.submit(shadow, fork, task=task, context=runtime.context, graph=graph)

    def fork_step(self, step: ModelStep[Any]) -> tuple[ModelResponse[Any] | None, StepReview | None]:
        """A shadow branch's first model call (the fork step): become the branch's run, and take production's
        proposal with the decision planned at the fork. Elsewhere: (None, None), the model is asked."""
        branch, record = step.branch, step.record
        if branch is None or record["run_id"] == branch.run_id:
            return None, None
        if branch.proposal is None:
            raise ForkError(f"shadow branch {branch.run_id} carries no proposal to apply its arm's decision to")
        record["run_id"], record["arm"], record["flag_step"] = branch.run_id, branch.arm.value, branch.fork_step
        verdict = None if branch.p_fail is None else Verdict(branch.p_fail, branch.rationale, branch.label)
        review = fork_step_review(branch.run_id, record["step"], verdict, branch.action, branch.feedback)
        safely("record_fork_step", self.guard.record_fork_step, review, default=None)
        return branch.proposal, review

    def production_end(self, record: GuardRun, *, excluded: str | None = None) -> None:
        """At the end of a production run of a pilot: open the concordant pair of a run never flagged.

        ``excluded``: why that pair must not count (a verdict judged off the user's path failed before the run's
        first flag, so whether it would have forked is unknown; or the run was abandoned, so it has no outcome): it
        is recorded excluded, with the reason (``status`` shows it), rather than counted concordant.
        """
        if not self.piloting:
            return
        run_id = record["run_id"]
        assert run_id is not None
        if record.get("flag_step") is None:
            safely(
                "open_pair", open_unflagged_pair, self.guard, run_id, excluded=excluded, background=True, default=None
            )
