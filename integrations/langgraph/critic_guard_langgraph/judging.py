"""Judging a model step's proposal: on the user's path where the verdict may act, in the background elsewhere.

Where the verdict cannot act (mode ``observe``; ``pilot`` / ``auto`` on an arm the guard does not act on) the step
does not wait for it: the critic call, the step row and the first-flag fork follow in the background
(:mod:`.offpath` is the queue), from the same context, proposal and checkpoint, unless ``fork_context`` (it must copy
the world at the flag) or ``judge_on_path=True`` keeps them on the path (docs/pilot-design.md, "Judging off the
user's path").

The first flag of a run judged off the path is kept here, in process, keyed by run id (the graph state's
``flag_step`` is written by the model node, which has moved on by the time a background verdict lands), and the
run's end waits behind its verdicts (:meth:`StepJudging.end_after_verdicts`). At most :data:`MAX_OPEN_RUNS` runs
are kept: a run that never ends and whose thread never runs again would otherwise stay forever, so past that the
oldest is abandoned (:meth:`StepJudging.abandon`: ended ``abandoned``, its pairs excluded with :data:`EVICTED`;
docs/faults.md, "A run that never ends").
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, cast

from langchain.agents.middleware.types import ModelResponse
from langgraph.config import get_config

from critic_guard.guard import CriticGuard, StepReview
from critic_guard.types import Arm, StepContext
from critic_guard_langgraph._runs import areview_or_none, review_or_none, safely
from critic_guard_langgraph.forking import PilotForks
from critic_guard_langgraph.messages import NeutralHistory
from critic_guard_langgraph.model_step import ModelStep
from critic_guard_langgraph.offpath import OffPathJudging
from critic_guard_langgraph.run_state import GuardRun, thread_of

__all__ = ["EVICTED", "MAX_OPEN_RUNS", "UNKNOWN_FLAG", "StepJudging"]

MAX_OPEN_RUNS: Final = 100_000
"""Runs judged off the path whose end this process has not seen, kept at most (a few hundred bytes each)."""
EVICTED: Final = (
    f"the run's end was not seen while {MAX_OPEN_RUNS:,} newer runs started in this process (it raised and its "
    "thread never ran again, or it waits at an interrupt)"
)
UNKNOWN_FLAG: Final = "a verdict judged off the user's path failed before the run's first flag (see the log)"
"""Why the pair of a run whose background verdict failed before its first flag is excluded (where, or whether,
it would have forked is unknown)."""


class StepJudging:
    """The verdicts of one middleware's steps, and the first flags of its runs judged off the path."""

    def __init__(self, guard: CriticGuard, forks: PilotForks, *, on_path: bool) -> None:
        self.guard = guard
        self.forks = forks
        self.on_path_always = on_path  # judge_on_path, or a fork_context
        self.histories = NeutralHistory()
        self.offpath = OffPathJudging(
            workers=guard.config.background_workers, max_pending=guard.config.background_queue
        )
        self._flag_steps: OrderedDict[str, int | None] = OrderedDict()  # off-path runs: their first flag, oldest first
        self._flag_lock = threading.Lock()

    def on_path(self, step: ModelStep[Any]) -> bool:
        """Whether this step waits for its verdict: where the verdict may act (mode on, the treatment arm of a
        pilot or of auto), in shadow branches, with a ``fork_context`` (it copies the world at the flag, before
        production moves on) or ``judge_on_path``. Elsewhere the verdict cannot change what the user gets."""
        return self.on_path_always or step.branch is not None or self.guard.acts(Arm(step.record["arm"]))

    def review(self, step: ModelStep[Any], response: ModelResponse[Any]) -> StepReview | None:
        """The step's review on the path; None when judged in the background (the step goes on) or nothing to judge."""
        if not self.on_path(step):
            return self._judge_later(step, response)
        ctx = step.context(response, self.histories)
        if ctx is None:
            return None
        review = review_or_none(self.guard, ctx, *step.budget())
        self.forks.first_flag(step, review, response, get_config(), asynchronous=False)
        return review

    async def areview(self, step: ModelStep[Any], response: ModelResponse[Any]) -> StepReview | None:
        """Async :meth:`review`: the critic is awaited (with the guard's timeout) on the event loop."""
        if not self.on_path(step):
            return await self._ajudge_later(step, response)
        ctx = step.context(response, self.histories)
        if ctx is None:
            return None
        review = await areview_or_none(self.guard, ctx, *step.budget())
        self.forks.first_flag(step, review, response, get_config(), asynchronous=True)
        return review

    # -- off the user's path ----------------------------------------------------------------------------------

    def _later(
        self, step: ModelStep[Any], response: ModelResponse[Any]
    ) -> tuple[StepContext, ModelStep[Any], dict[str, Any]] | None:
        """What a background verdict needs, taken now: the critic's view, a frozen copy of the step, the config
        (which also names the thread, so a pilot can await one conversation's verdicts)."""
        ctx = step.context(response, self.histories)
        if ctx is None:
            return None
        config = get_config()
        if self.forks.piloting:  # a run that could not fork fails here, on the user's path, as it would at its flag
            self.forks.fork_point(step.request.runtime, config)
        evicted = None
        with self._flag_lock:
            if ctx.run_id not in self._flag_steps:
                self._flag_steps[ctx.run_id] = step.record.get("flag_step")
                if len(self._flag_steps) > MAX_OPEN_RUNS:
                    evicted = self._flag_steps.popitem(last=False)
        if evicted is not None:
            run_id, flag_step = evicted
            self.abandon(cast("GuardRun", {"run_id": run_id, "flag_step": flag_step}), EVICTED)
        return ctx, step.frozen(), cast("dict[str, Any]", config)

    def _judged(
        self,
        frozen: ModelStep[Any],
        review: StepReview | None,
        response: ModelResponse[Any],
        config: dict[str, Any],
        *,
        asynchronous: bool,
    ) -> None:
        """A background verdict's first-flag work, on the run's in-process record (the graph state moved on).

        None after an earlier job of the run failed: where its first flag was is unknown, so the run forks no
        branch at a later step (its pair is recorded excluded at the run's end, ``PilotForks.production_end``).
        """
        run_id = frozen.record["run_id"]
        assert run_id is not None
        if self.offpath.failed(run_id):
            return
        with self._flag_lock:
            if run_id not in self._flag_steps:  # evicted (abandoned, its pairs excluded): nothing more to fork
                return
            frozen.record["flag_step"] = self._flag_steps[run_id]
        try:
            self.forks.first_flag(frozen, review, response, config, asynchronous=asynchronous)
        finally:
            with self._flag_lock:
                if run_id in self._flag_steps:
                    self._flag_steps[run_id] = frozen.record["flag_step"]

    def _judge_in_thread(
        self, ctx: StepContext, frozen: ModelStep[Any], response: ModelResponse[Any], config: dict[str, Any]
    ) -> None:
        """A background verdict of a sync agent, or of an async one whose loop ended first (its branch then runs on
        the sync API)."""
        review = review_or_none(self.guard, ctx, *frozen.budget())
        self._judged(frozen, review, response, config, asynchronous=False)

    def _judge_later(self, step: ModelStep[Any], response: ModelResponse[Any]) -> StepReview | None:
        """Queue the step's verdict (same context, proposal and checkpoint as on the path); the step goes on."""
        later = self._later(step, response)
        if later is None:
            return None
        ctx, frozen, config = later
        job = functools.partial(self._judge_in_thread, ctx, frozen, response, config)
        self.offpath.submit(ctx.run_id, job, thread_id=thread_of(config))
        return None  # no verdict yet: the step goes on as the unguarded agent's would

    async def _ajudge_later(self, step: ModelStep[Any], response: ModelResponse[Any]) -> StepReview | None:
        """Async :meth:`_judge_later`: the verdict is a task on this loop (awaited by ``aclose``), or runs in a
        thread if the loop ends before it starts (see ``OffPathJudging.asubmit``)."""
        later = self._later(step, response)
        if later is None:
            return None
        ctx, frozen, config = later

        async def job() -> None:
            review = await areview_or_none(self.guard, ctx, *frozen.budget())
            self._judged(frozen, review, response, config, asynchronous=True)

        fallback = functools.partial(self._judge_in_thread, ctx, frozen, response, config)
        await self.offpath.asubmit(ctx.run_id, job, fallback=fallback, thread_id=thread_of(config))
        return None

    # -- a run's end ------------------------------------------------------------------------------------------

    def end_after_verdicts(self, run_id: str) -> bool:
        """Whether the run's end must wait behind its background verdicts (its first flag is known only then)."""
        with self._flag_lock:
            return run_id in self._flag_steps

    def submit_end(self, run_id: str, finish: Callable[[], None]) -> None:
        """Queue the run's end behind its background verdicts."""
        self.offpath.submit(run_id, finish, thread_id=thread_of(get_config()))

    async def asubmit_end(self, run_id: str, finish: Callable[[], None]) -> None:
        """Async :meth:`submit_end`: a task on this loop, or in a thread if the loop ends first."""

        async def end() -> None:
            finish()

        await self.offpath.asubmit(run_id, end, fallback=finish, thread_id=thread_of(get_config()))

    def settle(self, record: GuardRun) -> tuple[GuardRun, str | None]:
        """At the run's end: its record with the first flag found off the path, and :data:`UNKNOWN_FLAG` if a
        background verdict failed before that flag (where the run would have forked is then unknown), else None.
        Forgets the run."""
        run_id = record["run_id"]
        assert run_id is not None
        with self._flag_lock:
            if run_id in self._flag_steps:
                record = cast("GuardRun", {**record, "flag_step": self._flag_steps.pop(run_id)})
        excluded = UNKNOWN_FLAG if self.offpath.failed(run_id) else None
        self.offpath.forget(run_id)
        self.histories.forget(run_id)
        return record, excluded

    def abandon(self, record: GuardRun, reason: str) -> None:
        """A production run that will never reach its end: it ends ``abandoned`` and its pairs are excluded with
        ``reason`` (a run never flagged gets its concordant pair recorded excluded), and it is forgotten here."""
        record, excluded = self.settle(record)
        self.forks.production_end(record, excluded=excluded or reason)
        safely("abandon_run", self.guard.abandon_run, record["run_id"], reason, background=True, default=None)
