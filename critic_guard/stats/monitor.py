"""Sequential monitoring of paired outcomes: two betting e-processes and the confidence sequence they invert to.

Each pair becomes ``X = (Y_control - Y_treatment + 1)/2`` in {0, 1/2, 1}: 0 for a recovery, 1 for a disruption, 1/2
for a concordant pair. Then ``E[X] = (1 - net)/2``, so "no harm" (net >= 0) is ``E[X] <= 1/2``.

*Harm e-process.* A gambler starts with wealth 1 and before each pair bets a fraction ``lambda_t`` in [0, 1],
chosen from past pairs only, that X lands above 1/2: ``K_t = prod_i (1 + lambda_i (X_i - 1/2))``. Under "no harm"
K is a non-negative supermartingale, so by Ville's inequality ``P(sup_t K_t >= 1/a) <= a``. The bets follow online
Newton steps (ONS, Cutkosky & Orabona 2018, as used for testing by betting by Shekhar & Ramdas 2023), two numbers
of state per side. The *benefit* e-process is the mirror image (it bets on ``1 - X``) and proves net > 0.

*One alpha for both sides.* ``alpha`` bounds the chance of *any* wrong proof, harm or benefit: by default each
e-process gets ``alpha/2`` (proof at wealth ``2/alpha``) and a union bound gives ``alpha`` in total. With
``split=False`` each side gets ``alpha`` (the total is then at most ``2 alpha``); docs/statistics.md has the cost.

*Confidence sequence by inversion.* The same bets test every other mean ``m``: ``K^harm_t(m) = prod (1 + lambda_i
(X_i - m))`` is an e-process for ``E[X] <= m`` and ``K^benefit_t(m) = prod (1 + lambda'_i (m - X_i))`` one for
``E[X] >= m``; at ``m = 1/2`` they are the two e-processes above. The band is every net whose ``m`` neither has
ever rejected, kept on a grid of ``m`` with the bound between grid points found on the chord of the concave
log-wealth (which lies below it, so the bound only ever claims less than was proven). Hence the band excludes 0
exactly when harm or benefit is proven: the decision and the band cannot disagree.

The state is a frozen dataclass; :meth:`MonitorState.update` returns a new state (pure, O(grid)), so a store can
persist it as JSON and replicas can update it with compare-and-swap. :func:`run_monitor` runs many sequences at
once with the same arithmetic, vectorised with numpy, for simulations and benchmarks.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from critic_guard.stats.intervals import Interval

FloatArray = NDArray[np.float64]

SCHEMA = 2
_ONS_STEP = 2.0 / (2.0 - math.log(3.0))  # Cutkosky & Orabona's ONS constant for |lambda * g| <= 1/2
_MAX_BET = 1.0  # with |X - 1/2| <= 1/2 this keeps every factor 1 + lambda (X - 1/2) >= 1/2 > 0
GRID = np.arange(1, 100) / 100.0
"""Means ``m`` of X at which the band is kept (net = 1 - 2m from +0.98 to -0.98, m = 1/2 included exactly). With
bets in [0, 1] every factor ``1 + lambda (X - m)`` stays >= 0.01 > 0 on it."""
_MIDDLE = 49  # GRID[_MIDDLE] == 0.5: net = 0
_CS_METHOD = "confidence sequence of the monitor's e-processes"
_LOG_FLOAT_MAX = math.log(sys.float_info.max)


def pair_to_x(control_success: bool, treatment_success: bool) -> float:
    """The monitored variable for one pair: 0 recovery, 1 disruption, 1/2 concordant."""
    return (int(control_success) - int(treatment_success) + 1) / 2.0


def side_alpha(alpha: float, split: bool) -> float:
    """The level each e-process runs at: ``alpha/2`` when ``alpha`` bounds both sides together, else ``alpha``."""
    return alpha / 2.0 if split else alpha


class _Sums(NamedTuple):
    """The arithmetic state, as floats (one sequence) or arrays (many sequences side by side)."""

    harm_bet: Any
    harm_grad2: Any
    harm_log_wealth: Any
    benefit_bet: Any
    benefit_grad2: Any
    benefit_log_wealth: Any


def _ons_step(bet: Any, grad2: Any, log_wealth: Any, gain: Any) -> tuple[Any, Any, Any]:
    """One round of betting on ``gain`` in [-1/2, 1/2]: settle the bet, then choose the next one by ONS."""
    factor = 1.0 + bet * gain
    log_wealth = log_wealth + np.log(factor)
    z = gain / factor  # derivative of log(1 + bet * gain) in bet
    grad2 = grad2 + z * z
    bet = np.clip(bet + _ONS_STEP * z / grad2, 0.0, _MAX_BET)
    return bet, grad2, log_wealth


def _advance(s: _Sums, x: Any) -> _Sums:
    """Fold one observation per sequence into the e-processes; works elementwise on floats or numpy arrays."""
    gain = x - 0.5
    return _Sums(
        *_ons_step(s.harm_bet, s.harm_grad2, s.harm_log_wealth, gain),
        *_ons_step(s.benefit_bet, s.benefit_grad2, s.benefit_log_wealth, -gain),
    )


def _advance_grid(harm: FloatArray, benefit: FloatArray, s: _Sums, x: Any) -> tuple[FloatArray, FloatArray]:
    """Settle the bets held before ``x`` (those in ``s``) at every grid mean; shapes ``(..., len(GRID))``."""
    x = np.asarray(x, dtype=float)[..., None]
    harm_bet = np.asarray(s.harm_bet, dtype=float)[..., None]
    benefit_bet = np.asarray(s.benefit_bet, dtype=float)[..., None]
    return harm + np.log(1.0 + harm_bet * (x - GRID)), benefit + np.log(1.0 + benefit_bet * (GRID - x))


def _crossing(m_in: Any, m_out: Any, f_in: Any, f_out: Any, level: float) -> Any:
    """Where the chord from a rejected grid mean to its unrejected neighbour meets ``level`` (concavity: rejected)."""
    share = (f_in - level) / np.maximum(f_in - f_out, 1e-300)
    return m_in + (m_out - m_in) * np.clip(share, 0.0, 1.0)


def _grid_bounds(harm: FloatArray, benefit: FloatArray, level: float) -> tuple[Any, Any]:
    """Net bounds rejected now: ``(low, high)`` such that every net <= low and >= high has been rejected.

    The harm side's log-wealth falls as ``m`` grows (it rejects small means, i.e. large nets); the benefit side's
    rises. Only an unbroken run of rejections from the grid's edge counts, so rounding can never widen a claim.
    """
    k = GRID.size
    rows = np.arange(harm.shape[0])
    harm_count = np.cumprod(harm >= level, axis=-1).sum(axis=-1)  # grid means 0..count-1 rejected
    last = np.maximum(harm_count - 1, 0)
    nxt = np.minimum(harm_count, k - 1)
    m_high = _crossing(GRID[last], GRID[nxt], harm[rows, last], harm[rows, nxt], level)
    m_high = np.where(harm_count == k, GRID[-1], m_high)
    high = np.where(harm_count == 0, 1.0, 1.0 - 2.0 * m_high)
    benefit_count = np.cumprod((benefit >= level)[:, ::-1], axis=-1).sum(axis=-1)
    first = np.minimum(k - benefit_count, k - 1)
    prev = np.maximum(k - benefit_count - 1, 0)
    m_low = _crossing(GRID[first], GRID[prev], benefit[rows, first], benefit[rows, prev], level)
    m_low = np.where(benefit_count == k, GRID[0], m_low)
    low = np.where(benefit_count == 0, -1.0, 1.0 - 2.0 * m_low)
    return low, high


def _exp(log_wealth: float) -> float:
    """``exp`` that saturates to infinity instead of raising: after some 1,750 one-sided pairs the wealth exceeds the
    largest float, and "infinite evidence" is the honest reading, not an error."""
    return math.exp(log_wealth) if log_wealth < _LOG_FLOAT_MAX else math.inf


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return float(alpha)


def _zeros() -> tuple[float, ...]:
    return (0.0,) * GRID.size


@dataclass(frozen=True, slots=True)
class MonitorState:
    """Everything the monitor knows after ``t`` pairs. Build with :meth:`start`, advance with :meth:`update`.

    ``alpha`` bounds any wrong proof when ``split`` (each side at ``alpha/2``), each side's when not.
    ``harm_proven_at`` / ``benefit_proven_at`` hold the pair count at which that e-process first reached
    ``1/side_alpha``; once set they never clear (a proof is not withdrawn because later luck lowers the wealth).
    ``band_low`` / ``band_high`` are the confidence sequence for net (running, so also never widen).
    ``inconclusive_at`` is set by the lifecycle when a pilot budget ran out with neither proof (docs/lifecycle.md):
    a third, equally sticky outcome that is not a proof of anything.
    """

    alpha: float = 0.05
    split: bool = True
    t: int = 0
    harm_bet: float = 0.0
    harm_grad2: float = 1.0
    harm_log_wealth: float = 0.0
    harm_proven_at: int | None = None
    benefit_bet: float = 0.0
    benefit_grad2: float = 1.0
    benefit_log_wealth: float = 0.0
    benefit_proven_at: int | None = None
    harm_grid: tuple[float, ...] = _zeros()
    benefit_grid: tuple[float, ...] = _zeros()
    band_low: float = -1.0
    band_high: float = 1.0
    inconclusive_at: int | None = None

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if not isinstance(self.split, bool):
            raise ValueError(f"split must be a bool, got {self.split!r}")

    @classmethod
    def start(cls, alpha: float = 0.05, *, split: bool = True) -> MonitorState:
        return cls(alpha=_check_alpha(alpha), split=split)

    @property
    def side_alpha(self) -> float:
        """The level of each e-process: a proof needs wealth ``1/side_alpha``."""
        return side_alpha(self.alpha, self.split)

    @property
    def threshold(self) -> float:
        return 1.0 / self.side_alpha

    # ---- updating ------------------------------------------------------------------------------------------
    def _sums(self) -> _Sums:
        return _Sums(*(getattr(self, name) for name in _Sums._fields))

    def update(self, x: float) -> MonitorState:
        """The state after one more observation ``x`` in [0, 1] (see :func:`pair_to_x`)."""
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0.0 <= x <= 1.0:
            raise ValueError(f"x must be a number in [0, 1], got {x!r}")
        sums = self._sums()
        harm, benefit = _advance_grid(np.asarray([self.harm_grid]), np.asarray([self.benefit_grid]), sums, float(x))
        new = _Sums(*(float(value) for value in _advance(sums, float(x))))
        level = math.log(self.threshold)
        low, high = _grid_bounds(harm, benefit, level)
        t = self.t + 1
        harm_at = self.harm_proven_at
        if harm_at is None and new.harm_log_wealth >= level:
            harm_at = t
        benefit_at = self.benefit_proven_at
        if benefit_at is None and new.benefit_log_wealth >= level:
            benefit_at = t
        return replace(
            self,
            t=t,
            harm_bet=new.harm_bet,
            harm_grad2=new.harm_grad2,
            harm_log_wealth=new.harm_log_wealth,
            harm_proven_at=harm_at,
            benefit_bet=new.benefit_bet,
            benefit_grad2=new.benefit_grad2,
            benefit_log_wealth=new.benefit_log_wealth,
            benefit_proven_at=benefit_at,
            harm_grid=tuple(harm[0].tolist()),
            benefit_grid=tuple(benefit[0].tolist()),
            band_low=max(self.band_low, float(low[0])),
            band_high=min(self.band_high, float(high[0])),
        )

    def update_pair(self, control_success: bool, treatment_success: bool) -> MonitorState:
        return self.update(pair_to_x(control_success, treatment_success))

    def mark_inconclusive(self) -> MonitorState:
        """The pilot budget ran out without a proof at this pair (set once; see docs/lifecycle.md)."""
        return self if self.inconclusive_at is not None else replace(self, inconclusive_at=self.t)

    # ---- reading -------------------------------------------------------------------------------------------
    @property
    def harm_wealth(self) -> float:
        """E-value against "no harm": how many times over a fair bettor multiplied its stake."""
        return _exp(self.harm_log_wealth)

    @property
    def benefit_wealth(self) -> float:
        return _exp(self.benefit_log_wealth)

    @property
    def harm_proven(self) -> bool:
        return self.harm_proven_at is not None

    @property
    def benefit_proven(self) -> bool:
        return self.benefit_proven_at is not None

    @property
    def inconclusive(self) -> bool:
        return self.inconclusive_at is not None

    def net_interval(self) -> Interval:
        """The anytime-valid confidence sequence for net: the nets neither e-process has rejected.

        Its level is ``1 - 2 side_alpha`` (``1 - alpha`` with the default split). Its ends are nets already
        rejected, so when harm is proven ``high < 0`` and when benefit is proven ``low > 0``.
        """
        low, high = self.band_low, self.band_high
        if low > high:  # both sides rejected everything between them: the effect changed over time (or a proof
            low = high = 0.5 * (low + high)  # is wrong); shown as the point where the two bounds crossed
        return Interval(low, high, 1.0 - 2.0 * self.side_alpha, _CS_METHOD)

    # ---- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats, ints, bools, lists, None) with a schema number for forward compatibility."""
        data = asdict(self)
        data["harm_grid"] = list(self.harm_grid)
        data["benefit_grid"] = list(self.benefit_grid)
        return {"schema": SCHEMA, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorState:
        """Inverse of :meth:`to_dict`; refuses unknown schemas and missing or extra keys.

        A schema-1 state (from before one alpha bounded both sides) loads with its meaning kept: ``split=False``
        (alpha per side, as it was run), its wealths and proofs as they were, and no grid yet: the band restarts
        from the proofs (a proven side excludes 0) and the grid's e-processes start at wealth 1 from here, which
        keeps them valid.
        """
        data = dict(data)
        schema = data.pop("schema", None)
        if schema == 1:
            data = _from_schema_1(data)
        elif schema != SCHEMA:
            raise ValueError(f"unsupported monitor state schema (expected {SCHEMA})")
        expected = {f.name for f in fields(cls)}
        if set(data) != expected:
            raise ValueError(f"monitor state keys differ: missing {expected - set(data)}, extra {set(data) - expected}")
        for name in ("t", "harm_proven_at", "benefit_proven_at", "inconclusive_at"):
            value = data[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"monitor state {name} must be an integer, got {value!r}")
        if data["t"] is None or data["t"] < 0:
            raise ValueError("monitor state t must be a non-negative integer")
        if not isinstance(data["split"], bool):
            raise ValueError(f"monitor state split must be a bool, got {data['split']!r}")
        for name in ("harm_grid", "benefit_grid"):
            grid = data[name]
            if not isinstance(grid, list | tuple) or len(grid) != GRID.size:
                raise ValueError(f"monitor state {name} must be a list of {GRID.size} numbers")
            data[name] = tuple(_finite(name, v) for v in grid)
        for name in expected - {"t", "harm_proven_at", "benefit_proven_at", "inconclusive_at", "split"}:
            if name not in ("harm_grid", "benefit_grid"):
                data[name] = _finite(name, data[name])
        return cls(**data)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"monitor state {name} must be a finite number, got {value!r}")
    return float(value)


_SCHEMA_1_KEYS = {
    "alpha", "t", "harm_bet", "harm_grad2", "harm_log_wealth", "harm_proven_at", "benefit_bet", "benefit_grad2",
    "benefit_log_wealth", "benefit_proven_at", "sum_x", "sum_sq_dev", "sum_lam", "sum_lam_x", "sum_penalty",
}  # fmt: skip


def _from_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    if set(data) != _SCHEMA_1_KEYS:
        raise ValueError(f"monitor state keys differ from schema 1: {sorted(set(data) ^ _SCHEMA_1_KEYS)}")
    kept = {k: v for k, v in data.items() if not k.startswith("sum_")}
    return {
        **kept,
        "split": False,
        "harm_grid": list(_zeros()),
        "benefit_grid": list(_zeros()),
        "band_low": 0.0 if data["benefit_proven_at"] is not None else -1.0,
        "band_high": 0.0 if data["harm_proven_at"] is not None else 1.0,
        "inconclusive_at": None,
    }


@dataclass(frozen=True, slots=True)
class MonitorPaths:
    """Paths of many monitored sequences, shape ``(runs, steps)``; column ``j`` is the state after ``j+1`` pairs.

    ``net_low`` / ``net_high`` (the confidence sequence) are None when :func:`run_monitor` was asked for the
    e-processes only.
    """

    alpha: float
    split: bool
    harm_log_wealth: FloatArray
    benefit_log_wealth: FloatArray
    net_low: FloatArray | None
    net_high: FloatArray | None

    @property
    def threshold(self) -> float:
        return 1.0 / side_alpha(self.alpha, self.split)

    def _first(self, log_wealth: FloatArray) -> NDArray[np.int64]:
        crossed = log_wealth >= math.log(self.threshold)
        return np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, 0).astype(np.int64)

    def harm_times(self) -> NDArray[np.int64]:
        """Pairs seen when harm was first proven, per run (0 = never)."""
        return self._first(self.harm_log_wealth)

    def benefit_times(self) -> NDArray[np.int64]:
        """Pairs seen when benefit was first proven, per run (0 = never)."""
        return self._first(self.benefit_log_wealth)


def run_monitor(xs: ArrayLike, alpha: float = 0.05, *, split: bool = True, band: bool = True) -> MonitorPaths:
    """Monitor each row of ``xs`` (shape ``(runs, steps)``, values in [0, 1]) from a fresh state.

    The arithmetic is that of :meth:`MonitorState.update`, applied to all runs at once per step. ``band=False``
    skips the confidence sequence (a grid per run), which simulations of the e-processes alone do not need.
    """
    alpha = _check_alpha(alpha)
    x = np.asarray(xs, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"xs must be two-dimensional (runs, steps), got shape {x.shape}")
    if not np.all((x >= 0.0) & (x <= 1.0)):
        raise ValueError("every x must be in [0, 1]")
    runs, steps = x.shape
    start = MonitorState.start(alpha, split=split)._sums()
    state = _Sums(*(np.full(runs, float(v)) for v in start))
    level = math.log(1.0 / side_alpha(alpha, split))
    harm_out, benefit_out = np.empty((runs, steps)), np.empty((runs, steps))
    low_out, high_out = (np.empty((runs, steps)), np.empty((runs, steps))) if band else (None, None)
    harm_grid, benefit_grid = np.zeros((runs, GRID.size)), np.zeros((runs, GRID.size))
    low, high = np.full(runs, -1.0), np.full(runs, 1.0)
    for j in range(steps):
        if band:
            harm_grid, benefit_grid = _advance_grid(harm_grid, benefit_grid, state, x[:, j])
            now_low, now_high = _grid_bounds(harm_grid, benefit_grid, level)
            low, high = np.maximum(low, now_low), np.minimum(high, now_high)
            assert low_out is not None and high_out is not None
            low_out[:, j], high_out[:, j] = low, high
        state = _advance(state, x[:, j])
        harm_out[:, j] = state.harm_log_wealth
        benefit_out[:, j] = state.benefit_log_wealth
    return MonitorPaths(alpha, split, harm_out, benefit_out, low_out, high_out)
