"""The pairs of a report as numpy columns, read as a sequence of :class:`PairPoint`.

Why columns: a store with a million pairs must report in seconds and a few hundred MB (benchmarks/report_scale.py);
a million small objects cost more than the arithmetic on them. The numbers (:mod:`critic_guard.report.numbers`)
work on the columns; callers that want one pair at a time still index or iterate :class:`PairPoint` values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

__all__ = ["NO_STEP", "PairColumns", "PairPoint"]

NO_STEP = -1
"""``fork_step`` of a pair never flagged or without step records (None in a :class:`PairPoint`)."""


@dataclass(frozen=True, slots=True)
class PairPoint:
    """One completed A/B pair in completion order, with where and how confidently the critic first flagged it.

    ``flagged`` is None when the source does not say (a pairs file); ``fork_step`` and ``p_fail`` are None for a
    task never flagged, or when the store holds no step records for it.
    """

    control: bool
    treatment: bool
    flagged: bool | None = None
    fork_step: int | None = None
    p_fail: float | None = None


class PairColumns(Sequence[PairPoint]):
    """Pairs in order as columns: ``control``/``treatment``/``flagged`` (bool; ``flagged`` None when the source
    does not say), ``fork_step`` (int, :data:`NO_STEP` for none), ``p_fail`` (float, NaN for none)."""

    __slots__ = ("control", "flagged", "fork_step", "p_fail", "treatment")

    def __init__(
        self,
        control: NDArray[np.bool_],
        treatment: NDArray[np.bool_],
        flagged: NDArray[np.bool_] | None = None,
        fork_step: NDArray[np.int64] | None = None,
        p_fail: NDArray[np.float64] | None = None,
    ) -> None:
        n = len(control)
        self.control = control
        self.treatment = treatment
        self.flagged = flagged
        self.fork_step = np.full(n, NO_STEP, dtype=np.int64) if fork_step is None else fork_step
        self.p_fail = np.full(n, np.nan) if p_fail is None else p_fail

    @classmethod
    def of(cls, points: Iterable[PairPoint]) -> PairColumns:
        points = list(points)
        flags = [p.flagged for p in points]
        return cls(
            np.array([p.control for p in points], dtype=bool),
            np.array([p.treatment for p in points], dtype=bool),
            None if any(f is None for f in flags) else np.array(flags, dtype=bool),
            np.array([NO_STEP if p.fork_step is None else p.fork_step for p in points], dtype=np.int64),
            np.array([np.nan if p.p_fail is None else p.p_fail for p in points], dtype=np.float64),
        )

    @property
    def cells(self) -> NDArray[np.int64]:
        """``2 * control + treatment`` per pair: the index of its cell in (n00, n01, n10, n11)."""
        return 2 * self.control.astype(np.int64) + self.treatment.astype(np.int64)

    def __len__(self) -> int:
        return len(self.control)

    def _point(self, i: int) -> PairPoint:
        step, p_fail = int(self.fork_step[i]), float(self.p_fail[i])
        return PairPoint(
            bool(self.control[i]),
            bool(self.treatment[i]),
            None if self.flagged is None else bool(self.flagged[i]),
            None if step == NO_STEP else step,
            None if np.isnan(p_fail) else p_fail,
        )

    @overload
    def __getitem__(self, index: int) -> PairPoint: ...

    @overload
    def __getitem__(self, index: slice) -> PairColumns: ...

    def __getitem__(self, index: int | slice) -> PairPoint | PairColumns:
        if isinstance(index, slice):
            flagged = None if self.flagged is None else self.flagged[index]
            return PairColumns(
                self.control[index], self.treatment[index], flagged, self.fork_step[index], self.p_fail[index]
            )
        return self._point(range(len(self))[index])

    def __iter__(self) -> Iterator[PairPoint]:
        return (self._point(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PairColumns):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PairColumns({len(self)} pairs)"


def as_columns(pairs: Sequence[PairPoint] | Any) -> PairColumns:
    """``pairs`` as columns (already columns: the same object)."""
    return pairs if isinstance(pairs, PairColumns) else PairColumns.of(pairs)
