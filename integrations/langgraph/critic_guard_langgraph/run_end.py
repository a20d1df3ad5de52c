"""A run's end (``after_agent``): its outcome from the judge, the concordant pair of a pilot run never flagged, and
``end_run`` in the guard's store.

A production run of a pilot is judged here (``judge(task, final_state)``); a shadow branch's run is judged and
ended by its runner (:mod:`.runner`). A run judged off the user's path ends as its last background job, after its
verdicts: only then is its first flag known (docs/pilot-design.md, "Judging off the user's path").
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from critic_guard.guard import CriticGuard
from critic_guard_langgraph._runs import asafely, logger, safely
from critic_guard_langgraph.forking import PilotForks
from critic_guard_langgraph.judging import StepJudging
from critic_guard_langgraph.run_state import GuardRun, current_branch, open_run, task_of
from critic_guard_langgraph.runner import Judge, call_judge

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

__all__ = ["ABANDONED", "RunEnds"]

ABANDONED: Final = "the run never reached its end: it raised, or its thread took a new input instead of resuming it"


class RunEnds:
    """Ends the runs of one middleware (``judge``: the pilot's, None when outcomes come from elsewhere)."""

    def __init__(self, guard: CriticGuard, judge: Judge | None, forks: PilotForks, judging: StepJudging) -> None:
        self.guard = guard
        self.judge = judge
        self._forks = forks
        self._judging = judging

    def end(self, record: GuardRun, state: Mapping[str, Any], runtime: Runtime[Any]) -> None:
        """End the run of ``record`` (whose ``run_id`` is set) with its final ``state``."""
        ok, production = None, current_branch() is None
        if self._forks.piloting and production and self.judge is not None:
            ok = safely("judge", self.judge, task_of(record["task"], runtime), state, default=None)
            if inspect.isawaitable(ok):
                raise TypeError("an async judge needs the async API (ainvoke / astream)")
        self._after_verdicts(record, functools.partial(self._finish, record, ok, production=production))

    async def aend(self, record: GuardRun, state: Mapping[str, Any], runtime: Runtime[Any]) -> None:
        """Async :meth:`end`: an async judge is awaited, a sync one runs in a worker thread (it may block, and
        nothing may block the event loop, docs/faults.md)."""
        ok, production = None, current_branch() is None
        if self._forks.piloting and production and self.judge is not None:
            ok = await asafely("judge", call_judge, self.judge, task_of(record["task"], runtime), state, default=None)
        await self._aafter_verdicts(record, functools.partial(self._finish, record, ok, production=production))

    def abandon_unended(self, state: Mapping[str, Any]) -> None:
        """At a run's start: the thread's previous production run, if it never reached ``after_agent``, ends
        ``abandoned`` and its pairs are excluded (they could never have its outcome), after its background
        verdicts, so its first flag is known (docs/faults.md, "A run that never ends")."""
        record = open_run(state)
        if record is not None:
            self._after_verdicts(record, functools.partial(self._judging.abandon, record, ABANDONED))

    async def aabandon_unended(self, state: Mapping[str, Any]) -> None:
        """Async :meth:`abandon_unended`."""
        record = open_run(state)
        if record is not None:
            await self._aafter_verdicts(record, functools.partial(self._judging.abandon, record, ABANDONED))

    def _after_verdicts(self, record: GuardRun, finish: Callable[[], None]) -> None:
        """``finish`` now, or as the run's last background job if it has any (its first flag is known only then)."""
        run_id = record["run_id"]
        assert run_id is not None
        if self._judging.end_after_verdicts(run_id):
            self._judging.submit_end(run_id, finish)
        else:
            finish()

    async def _aafter_verdicts(self, record: GuardRun, finish: Callable[[], None]) -> None:
        """Async :meth:`_after_verdicts` (a task on this loop, or a thread if the loop ends first)."""
        run_id = record["run_id"]
        assert run_id is not None
        if self._judging.end_after_verdicts(run_id):
            await self._judging.asubmit_end(run_id, finish)
        else:
            finish()

    def _finish(self, record: GuardRun, ok: object, *, production: bool) -> None:
        """The concordant pair of a pilot run never flagged, then ``end_run`` with the outcome, if judged (outcome
        first, so it lands on the run's open span).

        Runs on the path, or, for a run judged off the path, as its last background job (no LangGraph config there:
        ``production`` says whether the run is a production run rather than a shadow branch).
        """
        record, excluded = self._judging.settle(record)
        if not production:
            return
        self._forks.production_end(record, excluded=excluded)
        success = ok if isinstance(ok, bool) else None
        if ok is not None and success is None:
            logger.warning("critic-guard: the judge returned %r, not a bool; no outcome recorded", ok)
        run_id = record["run_id"]
        safely(
            "end_run", self.guard.end_run, run_id, status="completed", success=success, background=True, default=None
        )
