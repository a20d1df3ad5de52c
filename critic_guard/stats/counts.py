"""Paired outcome counts and the point estimates read from them (docs/statistics.md, "The data: pairs and cells").

A *pair* is (control outcome, treatment outcome) for one task. The four cells are named by those outcomes in that
order, 0 = failure and 1 = success: ``n01`` is a task the control arm failed and the treatment arm solved (a
*recovery*), ``n10`` the reverse (a *disruption*).

Estimates that a pilot cannot support (a rate with an empty denominator) come back as an :class:`Estimate` that
carries the reason instead of a number, so that nothing downstream mistakes "no data" for 0.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import SupportsIndex


class UndefinedEstimateError(ValueError):
    """Raised by :meth:`Estimate.require` when the estimate has no value."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate that is either a number or, when the data cannot define it, the reason why.

    Exactly one of ``value`` and ``reason`` is set. Use :meth:`defined` / :meth:`undefined` to build one.
    """

    value: float | None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("an Estimate has either a value or a reason, not both and not neither")

    @classmethod
    def defined(cls, value: float) -> Estimate:
        return cls(float(value), None)

    @classmethod
    def undefined(cls, reason: str) -> Estimate:
        return cls(None, reason)

    @property
    def is_defined(self) -> bool:
        return self.value is not None

    def require(self) -> float:
        """The value, or :class:`UndefinedEstimateError` with the reason."""
        if self.value is None:
            raise UndefinedEstimateError(self.reason)
        return self.value


def _ratio(numerator: int, denominator: int, reason: str) -> Estimate:
    if denominator == 0:
        return Estimate.undefined(reason)
    return Estimate.defined(numerator / denominator)


def _as_count(name: str, value: object) -> int:
    """A non-negative int; bools and floats are refused even when they look whole, to catch column mix-ups."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{name} must be a non-negative integer, got {value!r}")
    count = operator.index(value)
    if count < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {count}")
    return count


def _as_outcome(value: object, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    raise ValueError(f"{where}: an outcome must be true/false or 1/0, got {value!r}")


@dataclass(frozen=True, slots=True)
class PairedCounts:
    """The 2x2 table of paired outcomes: ``n00`` both fail, ``n01`` recovery, ``n10`` disruption, ``n11`` both succeed.

    >>> c = PairedCounts(118, 16, 9, 7)
    >>> round(c.net.require(), 4)
    0.0467
    """

    n00: int
    n01: int
    n10: int
    n11: int

    def __post_init__(self) -> None:
        for name in ("n00", "n01", "n10", "n11"):
            object.__setattr__(self, name, _as_count(name, getattr(self, name)))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[object, object]]) -> PairedCounts:
        """Count ``(control_success, treatment_success)`` pairs; outcomes are bools or 0/1."""
        cells = [0, 0, 0, 0]
        for i, pair in enumerate(pairs):
            try:
                control, treatment = pair
            except (TypeError, ValueError):
                raise ValueError(f"pair {i}: expected (control, treatment), got {pair!r}") from None
            cells[2 * _as_outcome(control, f"pair {i}") + _as_outcome(treatment, f"pair {i}")] += 1
        return cls(*cells)

    # ---- sizes ---------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.n00 + self.n01 + self.n10 + self.n11

    @property
    def discordant(self) -> int:
        """Pairs whose arms disagree: recoveries plus disruptions. Only these carry evidence about the sign."""
        return self.n01 + self.n10

    @property
    def control_failures(self) -> int:
        return self.n00 + self.n01

    @property
    def control_successes(self) -> int:
        return self.n10 + self.n11

    # ---- estimates -----------------------------------------------------------------------------------------
    @property
    def p(self) -> Estimate:
        """Baseline failure rate: the share of tasks the control arm fails."""
        return _ratio(self.control_failures, self.n, "no pairs: p is undefined")

    @property
    def r(self) -> Estimate:
        """Recovery rate: among control failures, the share the treatment solves."""
        return _ratio(self.n01, self.control_failures, "no control failures: r (recovery rate) is undefined")

    @property
    def d(self) -> Estimate:
        """Disruption rate: among control successes, the share the treatment breaks."""
        return _ratio(self.n10, self.control_successes, "no control successes: d (disruption rate) is undefined")

    @property
    def p_star(self) -> Estimate:
        """Break-even failure rate d/(r+d): intervention helps iff p > p_star."""
        r, d = self.r, self.d
        if r.value is None or d.value is None:
            return Estimate.undefined(f"p_star needs r and d: {r.reason or d.reason}")
        if r.value + d.value == 0:
            return Estimate.undefined("no recoveries and no disruptions: p_star = d/(r+d) is undefined")
        return Estimate.defined(d.value / (r.value + d.value))

    @property
    def net(self) -> Estimate:
        """Net effect (n01 - n10)/n = p*r - (1-p)*d: the change in success rate the intervention causes."""
        return _ratio(self.n01 - self.n10, self.n, "no pairs: net effect is undefined")

    @property
    def d_over_r(self) -> Estimate:
        """Disruptions per recovery (rate ratio); above 1 the paper advises selection (best-of-N) over intervention."""
        r, d = self.r, self.d
        if r.value is None or d.value is None:
            return Estimate.undefined(f"d/r needs r and d: {r.reason or d.reason}")
        if r.value == 0:
            what = "infinite" if d.value > 0 else "undefined (0/0)"
            return Estimate.undefined(f"no recoveries (r = 0): d/r is {what}")
        return Estimate.defined(d.value / r.value)

    @property
    def prefer_selection(self) -> bool | None:
        """Whether d/r > 1, i.e. d > r; None when r or d is undefined."""
        r, d = self.r, self.d
        if r.value is None or d.value is None:
            return None
        return d.value > r.value

    # ---- transformations -----------------------------------------------------------------------------------
    def swapped(self) -> PairedCounts:
        """The same pairs with the arms' roles exchanged (recoveries become disruptions)."""
        return PairedCounts(self.n00, self.n10, self.n01, self.n11)

    def __add__(self, other: PairedCounts) -> PairedCounts:
        if not isinstance(other, PairedCounts):
            return NotImplemented
        return PairedCounts(self.n00 + other.n00, self.n01 + other.n01, self.n10 + other.n10, self.n11 + other.n11)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.n00, self.n01, self.n10, self.n11)
