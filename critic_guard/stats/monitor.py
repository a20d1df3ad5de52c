"""Sequential monitoring of paired outcomes: betting e-processes and an anytime-valid confidence sequence.

Each pair becomes ``X = (Y_control - Y_treatment + 1)/2`` in {0, 1/2, 1}: 0 for a recovery, 1 for a disruption, 1/2
for a concordant pair. Then ``E[X] = (1 - net)/2``, so "no harm" (net >= 0) is ``E[X] <= 1/2``.

*Harm e-process.* A gambler starts with wealth 1 and before each pair bets a fraction ``lambda_t`` in [0, 1],
chosen from past pairs only, that X lands above 1/2: ``K_t = prod_i (1 + lambda_i (X_i - 1/2))``. Under "no harm"
K is a non-negative supermartingale, so by Ville's inequality ``P(sup_t K_t >= 1/alpha) <= alpha``: declaring harm
the first time the wealth reaches 1/alpha is wrong with probability at most alpha, however long we watch and
however often we look. Concordant pairs give ``X - 1/2 = 0`` and leave the wealth alone. The bets follow online
Newton steps (ONS, Cutkosky & Orabona 2018, as used for testing by betting by Shekhar & Ramdas 2023), which need
two numbers of state per side and adapt to any effect size. The *benefit* e-process is the mirror image (it bets
on ``1 - X``) and proves net > 0 the same way.

*Confidence sequence.* The predictable plug-in empirical-Bernstein CS for ``E[X]`` (Waudby-Smith & Ramdas 2023,
JRSS-B, Theorem 2) holds at every time simultaneously with probability ``1 - alpha``; it maps to one for
``net = 1 - 2 E[X]``. It needs five running sums.

The state is a small frozen dataclass; :meth:`MonitorState.update` returns a new state (pure, O(1)), so a store
can persist it as JSON and replicas can update it with compare-and-swap. :func:`run_monitor` runs many sequences
at once with the same arithmetic, vectorised with numpy, for simulations and benchmarks.
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

SCHEMA = 1
_ONS_STEP = 2.0 / (2.0 - math.log(3.0))  # Cutkosky & Orabona's ONS constant for |lambda * g| <= 1/2
_MAX_BET = 1.0  # with |X - 1/2| <= 1/2 this keeps every factor 1 + lambda (X - 1/2) >= 1/2 > 0
_CS_MAX_LAMBDA = 0.5  # truncation c of the PrPl-EB bets (Waudby-Smith & Ramdas suggest 1/2 or 3/4)
_CS_METHOD = "PrPl-EB confidence sequence"
_LOG_FLOAT_MAX = math.log(sys.float_info.max)


def pair_to_x(control_success: bool, treatment_success: bool) -> float:
    """The monitored variable for one pair: 0 recovery, 1 disruption, 1/2 concordant."""
    return (int(control_success) - int(treatment_success) + 1) / 2.0


class _Sums(NamedTuple):
    """The arithmetic state, as floats (one sequence) or arrays (many sequences side by side)."""

    t: Any
    harm_bet: Any
    harm_grad2: Any
    harm_log_wealth: Any
    benefit_bet: Any
    benefit_grad2: Any
    benefit_log_wealth: Any
    sum_x: Any
    sum_sq_dev: Any
    sum_lam: Any
    sum_lam_x: Any
    sum_penalty: Any


def _ons_step(bet: Any, grad2: Any, log_wealth: Any, gain: Any) -> tuple[Any, Any, Any]:
    """One round of betting on ``gain`` in [-1/2, 1/2]: settle the bet, then choose the next one by ONS."""
    factor = 1.0 + bet * gain
    log_wealth = log_wealth + np.log(factor)
    z = gain / factor  # derivative of log(1 + bet * gain) in bet
    grad2 = grad2 + z * z
    bet = np.clip(bet + _ONS_STEP * z / grad2, 0.0, _MAX_BET)
    return bet, grad2, log_wealth


def _advance(s: _Sums, x: Any, alpha: float) -> _Sums:
    """Fold one observation per sequence into the state; works elementwise on floats or numpy arrays."""
    gain = x - 0.5
    harm = _ons_step(s.harm_bet, s.harm_grad2, s.harm_log_wealth, gain)
    benefit = _ons_step(s.benefit_bet, s.benefit_grad2, s.benefit_log_wealth, -gain)
    # PrPl-EB: lambda_t uses the running mean and variance of X_1..X_{t-1} (with a pseudo-observation of
    # mean 1/2 and variance 1/4), so it is predictable.
    t = s.t + 1
    mean_prev = (0.5 + s.sum_x) / t
    var_prev = (0.25 + s.sum_sq_dev) / t
    lam = np.minimum(np.sqrt(2.0 * math.log(2.0 / alpha) / (var_prev * t * np.log1p(t))), _CS_MAX_LAMBDA)
    penalty = (x - mean_prev) ** 2 * (-np.log1p(-lam) - lam)  # v_t * psi_E(lambda_t) with v_t = 4 (X - mean)^2
    sum_x = s.sum_x + x
    mean_now = (0.5 + sum_x) / (t + 1)
    return _Sums(
        t=t,
        harm_bet=harm[0],
        harm_grad2=harm[1],
        harm_log_wealth=harm[2],
        benefit_bet=benefit[0],
        benefit_grad2=benefit[1],
        benefit_log_wealth=benefit[2],
        sum_x=sum_x,
        sum_sq_dev=s.sum_sq_dev + (x - mean_now) ** 2,
        sum_lam=s.sum_lam + lam,
        sum_lam_x=s.sum_lam_x + lam * x,
        sum_penalty=s.sum_penalty + penalty,
    )


def _net_bounds(s: _Sums, alpha: float) -> tuple[Any, Any]:
    """Confidence-sequence bounds for net from the running sums (needs at least one observation)."""
    centre = s.sum_lam_x / s.sum_lam
    radius = (math.log(2.0 / alpha) + s.sum_penalty) / s.sum_lam
    mean_low = np.clip(centre - radius, 0.0, 1.0)
    mean_high = np.clip(centre + radius, 0.0, 1.0)
    return 1.0 - 2.0 * mean_high, 1.0 - 2.0 * mean_low


def _exp(log_wealth: float) -> float:
    """``exp`` that saturates to infinity instead of raising: after some 1,750 one-sided pairs the wealth exceeds the
    largest float, and "infinite evidence" is the honest reading, not an error."""
    return math.exp(log_wealth) if log_wealth < _LOG_FLOAT_MAX else math.inf


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return float(alpha)


@dataclass(frozen=True, slots=True)
class MonitorState:
    """Everything the monitor knows after ``t`` pairs. Build with :meth:`start`, advance with :meth:`update`.

    ``harm_proven_at`` / ``benefit_proven_at`` hold the pair count at which that e-process first reached
    ``1/alpha``; once set they never clear (a proof is not withdrawn because later luck lowers the wealth).
    """

    alpha: float = 0.05
    t: int = 0
    harm_bet: float = 0.0
    harm_grad2: float = 1.0
    harm_log_wealth: float = 0.0
    harm_proven_at: int | None = None
    benefit_bet: float = 0.0
    benefit_grad2: float = 1.0
    benefit_log_wealth: float = 0.0
    benefit_proven_at: int | None = None
    sum_x: float = 0.0
    sum_sq_dev: float = 0.0
    sum_lam: float = 0.0
    sum_lam_x: float = 0.0
    sum_penalty: float = 0.0

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)

    @classmethod
    def start(cls, alpha: float = 0.05) -> MonitorState:
        return cls(alpha=_check_alpha(alpha))

    # ---- updating ------------------------------------------------------------------------------------------
    def _sums(self) -> _Sums:
        return _Sums(*(getattr(self, name) for name in _Sums._fields))

    def update(self, x: float) -> MonitorState:
        """The state after one more observation ``x`` in [0, 1] (see :func:`pair_to_x`)."""
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0.0 <= x <= 1.0:
            raise ValueError(f"x must be a number in [0, 1], got {x!r}")
        new = _advance(self._sums(), float(x), self.alpha)
        values = {name: float(value) for name, value in new._asdict().items()}
        t = self.t + 1
        threshold = math.log(1.0 / self.alpha)
        harm_at = self.harm_proven_at
        if harm_at is None and values["harm_log_wealth"] >= threshold:
            harm_at = t
        benefit_at = self.benefit_proven_at
        if benefit_at is None and values["benefit_log_wealth"] >= threshold:
            benefit_at = t
        values.pop("t")
        return replace(self, t=t, harm_proven_at=harm_at, benefit_proven_at=benefit_at, **values)

    def update_pair(self, control_success: bool, treatment_success: bool) -> MonitorState:
        return self.update(pair_to_x(control_success, treatment_success))

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

    def net_interval(self) -> Interval:
        """Anytime-valid ``1 - alpha`` confidence sequence for net, at the current time."""
        if self.t == 0:
            return Interval(-1.0, 1.0, 1.0 - self.alpha, _CS_METHOD)
        low, high = _net_bounds(self._sums(), self.alpha)
        return Interval(float(low), float(high), 1.0 - self.alpha, _CS_METHOD)

    # ---- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats, ints, None) with a schema number for forward compatibility."""
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorState:
        """Inverse of :meth:`to_dict`; refuses unknown schemas and missing or extra keys."""
        data = dict(data)
        if data.pop("schema", None) != SCHEMA:
            raise ValueError(f"unsupported monitor state schema (expected {SCHEMA})")
        expected = {f.name for f in fields(cls)}
        if set(data) != expected:
            raise ValueError(f"monitor state keys differ: missing {expected - set(data)}, extra {set(data) - expected}")
        for name in ("t", "harm_proven_at", "benefit_proven_at"):
            value = data[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"monitor state {name} must be an integer, got {value!r}")
        if data["t"] is None or data["t"] < 0:
            raise ValueError("monitor state t must be a non-negative integer")
        for name in expected - {"t", "harm_proven_at", "benefit_proven_at"}:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"monitor state {name} must be a finite number, got {value!r}")
            data[name] = float(value)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class MonitorPaths:
    """Paths of many monitored sequences, shape ``(runs, steps)``; column ``j`` is the state after ``j+1`` pairs."""

    alpha: float
    harm_log_wealth: FloatArray
    benefit_log_wealth: FloatArray
    net_low: FloatArray
    net_high: FloatArray

    def _first(self, log_wealth: FloatArray) -> NDArray[np.int64]:
        crossed = log_wealth >= math.log(1.0 / self.alpha)
        return np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, 0).astype(np.int64)

    def harm_times(self) -> NDArray[np.int64]:
        """Pairs seen when harm was first proven, per run (0 = never)."""
        return self._first(self.harm_log_wealth)

    def benefit_times(self) -> NDArray[np.int64]:
        """Pairs seen when benefit was first proven, per run (0 = never)."""
        return self._first(self.benefit_log_wealth)


def run_monitor(xs: ArrayLike, alpha: float = 0.05) -> MonitorPaths:
    """Monitor each row of ``xs`` (shape ``(runs, steps)``, values in [0, 1]) from a fresh state.

    The arithmetic is that of :meth:`MonitorState.update`, applied to all runs at once per step.
    """
    alpha = _check_alpha(alpha)
    x = np.asarray(xs, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"xs must be two-dimensional (runs, steps), got shape {x.shape}")
    if not np.all((x >= 0.0) & (x <= 1.0)):
        raise ValueError("every x must be in [0, 1]")
    runs, steps = x.shape
    start = MonitorState.start(alpha)._sums()
    state = _Sums(*(np.full(runs, float(v)) for v in start))
    out = {name: np.empty((runs, steps)) for name in ("harm", "benefit", "low", "high")}
    for j in range(steps):
        state = _advance(state, x[:, j], alpha)
        out["harm"][:, j] = state.harm_log_wealth
        out["benefit"][:, j] = state.benefit_log_wealth
        out["low"][:, j], out["high"][:, j] = _net_bounds(state, alpha)
    return MonitorPaths(alpha, out["harm"], out["benefit"], out["low"], out["high"])
