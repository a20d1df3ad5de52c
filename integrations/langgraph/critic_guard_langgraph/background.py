"""A middleware's work that outlives a step: the verdicts judged off the user's path and the branches they fork.

Both finish in that order (a background verdict may still fork a shadow branch), whether the middleware closes
(``close`` / ``aclose``, or the guard's own ``close``, which the middleware registers with ``guard.on_close``) or a
pilot only waits for one conversation's work (``wait`` / ``drain`` with a ``thread_id``), docs/pilot-design.md,
"Judging off the user's path".
"""

from __future__ import annotations

import time

from critic_guard_langgraph.offpath import OffPathJudging
from critic_guard_langgraph.runner import ShadowRunner

__all__ = ["WorkInFlight"]


class WorkInFlight:
    """The background verdicts (``offpath``) and the shadow branches (``runner``, None when nothing forks)."""

    def __init__(self, offpath: OffPathJudging, runner: ShadowRunner | None) -> None:
        self.offpath = offpath
        self.runner = runner

    def close(self, timeout: float | None = None) -> None:
        """Finish the background verdicts (they may still fork branches), then the branches."""
        self.offpath.close(timeout)
        if self.runner is not None:
            self.runner.close(timeout)

    async def aclose(self) -> None:
        """Async :meth:`close`: await both on this loop."""
        await self.offpath.adrain()  # first: a background verdict may still fork a branch
        if self.runner is not None:
            await self.runner.aclose()

    def wait(self, timeout: float | None = None, *, thread_id: str | None = None) -> bool:
        """Wait, without closing anything, for the verdicts then the branches (only ``thread_id``'s, if given); True
        if all finished within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = self.offpath.wait(timeout, thread_id=thread_id)
        if self.runner is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            finished = self.runner.wait(left, thread_id=thread_id) and finished
        return finished

    async def drain(self, thread_id: str | None = None) -> None:
        """Async :meth:`wait`, without a timeout."""
        await self.offpath.adrain(thread_id)
        if self.runner is not None:
            await self.runner.drain(thread_id)
