"""The pilot report (``critic-guard report``): gather (:mod:`.data`), compute (:mod:`.numbers`), draw
(:mod:`.figures`), render (:mod:`.html`), each in its own module so that the numbers never depend on where the pairs
came from or how they are shown.

:func:`build_report` runs the last three steps; :mod:`.figures` imports matplotlib (the ``plot`` extra), so this
package is imported only by the command that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from critic_guard.report.data import ReportData, UnknownGuardKeyError, choose_guard_key, from_pairs_file, from_store
from critic_guard.report.figures import render_figures
from critic_guard.report.html import DATA_ELEMENT_ID, render_html
from critic_guard.report.numbers import Recommendation, ReportNumbers, compute

__all__ = [
    "DATA_ELEMENT_ID",
    "BuiltReport",
    "Recommendation",
    "ReportData",
    "ReportNumbers",
    "UnknownGuardKeyError",
    "build_report",
    "choose_guard_key",
    "from_pairs_file",
    "from_store",
]


@dataclass(frozen=True, slots=True)
class BuiltReport:
    """The page, its figures (PNG bytes by name) and the numbers both were made from."""

    html: str
    figures: dict[str, bytes]
    numbers: ReportNumbers

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
