"""How a pilot looks in a terminal: a live progress bar while it runs, and a summary above the statistics report.

Kept apart from :mod:`critic_guard.pilot` so that the runner stays free of rich and the CLI stays thin; the report
itself is :func:`critic_guard.render.render_report`, the same rendering ``critic-guard analyze`` uses.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from critic_guard.pilot import PilotResult, Tally
from critic_guard.render import render_report
from critic_guard.safe_text import visible

__all__ = ["RichProgress", "describe_tally", "render_pilot"]


def describe_tally(tally: Tally) -> str:
    """One short line: the cells so far and how many pairs are not counted (excluded, open, failed tasks)."""
    return (
        f"n00 {tally.n00} n01 {tally.n01} n10 {tally.n10} n11 {tally.n11} | "
        f"excluded {tally.incomplete + tally.abandoned} open {tally.open} failed {tally.failed}"
    )


class RichProgress:
    """A progress bar (tasks done / total) with the cells and the running verdict, on stderr.

    Use as a context manager around :func:`~critic_guard.pilot.run_pilot`; it is that function's ``progress``.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]pilot"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[cells]}"),
            TextColumn("verdict: {task.fields[verdict]}"),
            console=console or Console(stderr=True),
        )
        self._task: TaskID | None = None

    def update(self, tally: Tally, verdict: str | None) -> None:
        finished = tally.done + tally.failed
        cells, shown = describe_tally(tally), verdict or "no pairs yet"
        if self._task is None:
            self._task = self._progress.add_task(
                "pilot", total=tally.total, completed=finished, cells=cells, verdict=shown
            )
        else:
            self._progress.update(self._task, completed=finished, cells=cells, verdict=shown)

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


def render_pilot(result: PilotResult) -> RenderableType:
    """The pilot's summary (tasks, what was excluded and why, the lifecycle) followed by the statistics report."""
    t = result.tally
    lines = Text()
    lines.append(f"Pilot {visible(result.pilot_key)}\n", style="bold")
    lines.append(
        f"tasks: {t.done} of {t.total} done ({result.skipped} before this run, {result.ran} run now), "
        f"{t.failed} failed\n"
    )
    lines.append(
        f"pairs: {t.counts.n} complete ({t.flagged} forked at a flag, {t.counts.n - t.flagged} unflagged at the cost "
        f"of one run); excluded: {t.incomplete} incomplete, {t.abandoned} abandoned by a restart; "
        f"{t.open} waiting for an outcome, {t.unpaired} without a pair\n"
    )
    for task_id, why in sorted(t.failures.items()):  # Text.append: stored strings are never read as markup
        lines.append(f"failed task {task_id} (a rerun runs it again): {visible(why)}\n", style="red")
    if result.lost_writes:
        lines.append(f"{result.lost_writes} run, outcome or pair writes were lost (store unavailable)\n", style="red")
    lifecycle = result.lifecycle
    lines.append(f"guard lifecycle: {'unknown (store unavailable)' if lifecycle is None else lifecycle.state.value}")
    if lifecycle is not None and lifecycle.last_transition is not None:
        last = lifecycle.last_transition
        lines.append(f" (last transition {last.from_state.value} -> {last.to_state.value}: {visible(last.reason)})")
    if result.report is None:
        return Group(lines, Text("No complete pairs: nothing to analyse yet.", style="yellow"))
    return Group(lines, render_report(result.report))
