"""Building a report: numbers (:mod:`.numbers`), figures (:mod:`.figures`, matplotlib) and the page
(:mod:`.html`) from gathered :class:`~critic_guard.report.data.ReportData`, and writing them to disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from critic_guard.report.data import ReportData
from critic_guard.report.figures import render_figures
from critic_guard.report.html import render_html
from critic_guard.report.numbers import ReportNumbers, compute

if TYPE_CHECKING:
    from critic_guard.report.observed import ObservedNumbers

__all__ = ["BuiltReport", "build_report"]


@dataclass(frozen=True, slots=True)
class BuiltReport:
    """The page, its figures (PNG bytes by name) and the numbers both were made from (a pilot's, or an observed
    guard's: :mod:`critic_guard.report.observed_page`)."""

    html: str
    figures: dict[str, bytes]
    numbers: ReportNumbers | ObservedNumbers

    def write(self, html_path: str | Path, figures_dir: str | Path | None = None) -> list[Path]:
        """Write the page (and, with ``figures_dir``, each figure as ``<name>.png``); return the paths written."""
        html_path = Path(html_path)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(self.html, encoding="utf-8")
        written = [html_path]
        if figures_dir is not None:
            folder = Path(figures_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for name, png in self.figures.items():
                path = folder / f"{name}.png"
                path.write_bytes(png)
                written.append(path)
        return written


def build_report(data: ReportData, *, level: float = 0.95, seed: int = 0) -> BuiltReport:
    """Numbers, figures and page for ``data``; ``ValueError`` when there are no pairs to analyse."""
    numbers = compute(data, level=level, seed=seed)
    transitions = () if data.store is None else data.store.transitions
    figures = render_figures(numbers, transitions)
    return BuiltReport(render_html(data, numbers, figures), figures, numbers)
