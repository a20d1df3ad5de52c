"""Calibrating a critic from labeled verdicts, and measuring how good it is.

Input everywhere: pairs ``(p_fail, failed)`` where ``p_fail`` is the critic's raw score for a step and ``failed``
whether that run failed in the end (:func:`labeled_verdicts` reads them from a store).

Three calibrators, each fitted by a classmethod ``fit(scores, failed)``:

- :class:`TemperatureScaling` (the paper's method): ``sigmoid(logit(p) / T)``, one parameter fitted by minimising
  the negative log-likelihood.
- :class:`PlattScaling`: ``sigmoid(a * logit(p) + b)``, also by NLL; ``a`` must come out positive.
- :class:`IsotonicCalibration`: the non-decreasing step function closest to the labels (pool-adjacent-violators).

**Calibration is a threshold shift.** All three maps are non-decreasing, so "calibrated ``p_fail >= tau``" is the
same decision as "raw ``p_fail >= r``" for one raw threshold ``r``; :meth:`~Calibrator.raw_threshold` returns it.
Calibration therefore never changes *which ordering* the critic induces (its AUROC), only where the cut falls, and
a guard on a calibrated critic with ``tau`` flags exactly the steps a guard on the raw critic with
``tau = raw_threshold(tau)`` flags. What calibration buys is probabilities that mean what they say (low ECE), so a
``tau`` chosen on one critic transfers to another.

:func:`critic_quality` reports AUROC (Mann-Whitney, ties count 1/2), ECE over equal-width bins and the
reliability table.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from critic_guard.critics import Critic, is_native_async, runs_on_caller_loop
from critic_guard.types import StepContext, Verdict

if TYPE_CHECKING:
    from critic_guard.store.base import RunReader

__all__ = [
    "CalibratedCritic",
    "Calibrator",
    "CriticQuality",
    "IsotonicCalibration",
    "PlattScaling",
    "ReliabilityBin",
    "TemperatureScaling",
    "critic_quality",
    "labeled_verdicts",
]

EPS = 1e-6
"""Scores are clipped to ``[EPS, 1 - EPS]`` before taking logits, so a critic that says exactly 0 or 1 stays finite."""

FloatArray = NDArray[np.float64]


def _labeled(scores: ArrayLike, failed: ArrayLike, *, need_both: bool) -> tuple[FloatArray, FloatArray]:
    """Validate and convert labeled scores; ``failed`` becomes 0.0/1.0."""
    p = np.asarray(scores, dtype=np.float64)
    y_raw = np.asarray(failed)
    if p.ndim != 1 or y_raw.ndim != 1 or p.shape != y_raw.shape:
        raise ValueError(f"scores and failed must be 1-D and of equal length, got shapes {p.shape} and {y_raw.shape}")
    if p.size == 0:
        raise ValueError("no labeled verdicts given")
    if not np.all(np.isfinite(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("scores must be probabilities in [0, 1] (no NaN)")
    if y_raw.dtype != np.bool_ and not np.all(np.isin(y_raw, (0, 1))):
        raise ValueError("failed must be booleans (or 0/1)")
    y = y_raw.astype(np.float64)
    if need_both and (y.min() == y.max()):
        raise ValueError("need at least one failed and one successful run among the labeled verdicts")
    return p, y


def _logit(p: ArrayLike) -> FloatArray:
    clipped = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.asarray(special.logit(clipped), dtype=np.float64)


def _check_tau(tau: float) -> None:
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau!r}")


def _threshold_from_logit(z_cut: float) -> float:
    """Raw threshold for maps that are increasing functions of the clipped logit: ``p >= sigmoid(z_cut)``.

    Scores are clipped to ``[EPS, 1-EPS]`` first, so a cut below EPS lets every score through and a cut above
    ``1 - EPS`` none.
    """
    r = float(special.expit(z_cut))
    if r <= EPS:
        return 0.0
    if r > 1.0 - EPS:
        return math.inf
    return r


class Calibrator(ABC):
    """A non-decreasing map from raw critic scores to calibrated failure probabilities."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Identity of the fitted map (becomes part of a :class:`CalibratedCritic`'s name and so of the guard key)."""

    @abstractmethod
    def _transform(self, p: FloatArray) -> FloatArray: ...

    @abstractmethod
    def raw_threshold(self, tau: float) -> float:
        """The raw score ``r`` with ``transform(p) >= tau`` exactly when ``p >= r`` (0.0: every score; inf: none)."""

    @overload
    def transform(self, p: float) -> float: ...
    @overload
    def transform(self, p: NDArray[Any] | Sequence[float]) -> FloatArray: ...
    def transform(self, p: ArrayLike) -> FloatArray | float:
        """Calibrate one score (returns a float) or an array of scores (returns an array)."""
        arr = np.asarray(p, dtype=np.float64)
        if not np.all(np.isfinite(arr)) or np.any((arr < 0.0) | (arr > 1.0)):
            raise ValueError("scores must be probabilities in [0, 1] (no NaN)")
        out = self._transform(np.atleast_1d(arr))
        return float(out[0]) if arr.ndim == 0 else out.reshape(arr.shape)


@dataclass(frozen=True, slots=True)
class TemperatureScaling(Calibrator):
    """``sigmoid(logit(p) / T)``: ``T > 1`` softens an over-confident critic, ``T < 1`` sharpens a timid one."""

    temperature: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be a positive finite number, got {self.temperature!r}")

    @classmethod
    def fit(cls, scores: ArrayLike, failed: ArrayLike) -> TemperatureScaling:
        """Fit ``T`` by minimising the NLL of the labels over ``log T`` (bounded Brent search, T in [e^-7, e^7])."""
        p, y = _labeled(scores, failed, need_both=True)
        z = _logit(p)

        def nll(log_t: float) -> float:
            s = z / math.exp(log_t)
            return float(np.sum(np.logaddexp(0.0, s) - y * s))

        res = optimize.minimize_scalar(nll, bounds=(-7.0, 7.0), method="bounded", options={"xatol": 1e-9})
        return cls(float(math.exp(res.x)))

    @property
    def name(self) -> str:
        return f"temperature(T={self.temperature:.4g})"

    def _transform(self, p: FloatArray) -> FloatArray:
        return np.asarray(special.expit(_logit(p) / self.temperature), dtype=np.float64)

    def raw_threshold(self, tau: float) -> float:
        _check_tau(tau)
        return _threshold_from_logit(self.temperature * float(special.logit(tau)))


@dataclass(frozen=True, slots=True)
class PlattScaling(Calibrator):
    """``sigmoid(a * logit(p) + b)`` with ``a > 0`` (a non-increasing fit means the critic ranks backwards)."""

    a: float
    b: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"Platt parameters must be finite, got a={self.a!r}, b={self.b!r}")
        if self.a <= 0.0:
            raise ValueError(
                f"Platt slope a={self.a:.4g} is not positive: the critic's scores do not increase with failure, so "
                "no monotone calibration can help; check the critic (or the labels: failed=True means the run failed)"
            )

    @classmethod
    def fit(cls, scores: ArrayLike, failed: ArrayLike) -> PlattScaling:
        """Fit ``(a, b)`` by minimising the NLL of the labels (BFGS with the analytic gradient)."""
        p, y = _labeled(scores, failed, need_both=True)
        z = _logit(p)

        def nll(theta: FloatArray) -> tuple[float, FloatArray]:
            s = theta[0] * z + theta[1]
            residual = special.expit(s) - y
            return float(np.sum(np.logaddexp(0.0, s) - y * s)), np.array([residual @ z, residual.sum()])

        res = optimize.minimize(nll, x0=np.array([1.0, 0.0]), jac=True, method="BFGS")
        return cls(float(res.x[0]), float(res.x[1]))

    @property
    def name(self) -> str:
        return f"platt(a={self.a:.4g},b={self.b:.4g})"

    def _transform(self, p: FloatArray) -> FloatArray:
        return np.asarray(special.expit(self.a * _logit(p) + self.b), dtype=np.float64)

    def raw_threshold(self, tau: float) -> float:
        _check_tau(tau)
        return _threshold_from_logit((float(special.logit(tau)) - self.b) / self.a)


@dataclass(frozen=True, slots=True)
class IsotonicCalibration(Calibrator):
    """A non-decreasing step function: score ``p`` maps to ``values[k]`` for the last ``starts[k] <= p``.

    Scores below ``starts[0]`` take ``values[0]``. Values strictly increase from block to block.
    """

    starts: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.starts or len(self.starts) != len(self.values):
            raise ValueError("starts and values must be non-empty and of equal length")
        if any(b <= a for a, b in zip(self.starts, self.starts[1:], strict=False)):
            raise ValueError("starts must be strictly increasing")
        if any(b < a for a, b in zip(self.values, self.values[1:], strict=False)):
            raise ValueError("values must be non-decreasing")
        if any(not 0.0 <= v <= 1.0 for v in self.values):
            raise ValueError("values must be probabilities in [0, 1]")

    @classmethod
    def fit(cls, scores: ArrayLike, failed: ArrayLike) -> IsotonicCalibration:
        """Pool adjacent violators over the distinct scores (ties pooled first, weighted by their count)."""
        p, y = _labeled(scores, failed, need_both=False)
        xs, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=y)
        blocks: list[list[float]] = []  # [sum of labels, weight, first score]
        for x, s, w in zip(xs, sums, counts, strict=True):
            blocks.append([float(s), float(w), float(x)])
            # Merge while the last block's mean does not exceed the previous one (cross-multiplied means).
            while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
                s_last, w_last, _ = blocks.pop()
                blocks[-1][0] += s_last
                blocks[-1][1] += w_last
        return cls(tuple(b[2] for b in blocks), tuple(b[0] / b[1] for b in blocks))

    @property
    def name(self) -> str:
        return f"isotonic({len(self.starts)} steps)"

    def _transform(self, p: FloatArray) -> FloatArray:
        idx = np.searchsorted(np.asarray(self.starts), p, side="right") - 1
        return np.asarray(self.values, dtype=np.float64)[np.maximum(idx, 0)]

    def raw_threshold(self, tau: float) -> float:
        _check_tau(tau)
        k = int(np.searchsorted(np.asarray(self.values), tau, side="left"))  # first block with value >= tau
        if k == len(self.values):
            return math.inf
        return 0.0 if k == 0 else self.starts[k]


class CalibratedCritic:
    """A critic whose verdicts pass through a fitted calibrator (rationale and label unchanged).

    Its name is ``"<critic>+<calibrator>"``, so refitting the calibration starts fresh guard evidence.
    """

    def __init__(self, critic: Critic, calibrator: Calibrator, *, name: str | None = None) -> None:
        self.critic = critic
        self.calibrator = calibrator
        self.name = name or f"{critic.name}+{calibrator.name}"
        self.native_async = is_native_async(critic)
        self.caller_loop = runs_on_caller_loop(critic)

    def _calibrated(self, verdict: Verdict) -> Verdict:
        if not isinstance(verdict, Verdict):
            raise TypeError(f"critic {self.critic.name!r} returned {type(verdict).__name__}, expected a Verdict")
        p = self.calibrator.transform(verdict.p_fail)
        return Verdict(p, rationale=verdict.rationale, label=verdict.label)

    def judge(self, ctx: StepContext) -> Verdict:
        return self._calibrated(self.critic.judge(ctx))

    async def ajudge(self, ctx: StepContext) -> Verdict:
        return self._calibrated(await self.critic.ajudge(ctx))

    def __repr__(self) -> str:
        return f"CalibratedCritic({self.name!r})"


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One equal-width score bin: how many verdicts fell in it, their mean score, and how often those runs failed."""

    low: float
    high: float
    count: int
    mean_score: float | None
    failure_rate: float | None


@dataclass(frozen=True, slots=True)
class CriticQuality:
    """How well a critic separates failing from succeeding runs (AUROC) and how honest its probabilities are (ECE)."""

    n: int
    n_failed: int
    auroc: float
    ece: float
    brier: float
    reliability: tuple[ReliabilityBin, ...]

    def table(self) -> str:
        """The reliability table as aligned text."""
        lines = [f"{'bin':>13} {'count':>6} {'mean p_fail':>12} {'failure rate':>13}"]
        for k, b in enumerate(self.reliability):
            mean = "-" if b.mean_score is None else f"{b.mean_score:.3f}"
            rate = "-" if b.failure_rate is None else f"{b.failure_rate:.3f}"
            close = "]" if k == len(self.reliability) - 1 else ")"  # the last bin includes 1.0
            lines.append(f"{f'[{b.low:.2f}, {b.high:.2f}{close}':>13} {b.count:>6} {mean:>12} {rate:>13}")
        return "\n".join(lines)

    def __str__(self) -> str:
        head = (
            f"critic quality: n={self.n} (failed {self.n_failed}), AUROC={self.auroc:.3f}, "
            f"ECE={self.ece:.3f}, Brier={self.brier:.3f}"
        )
        return head + "\n" + self.table()


def critic_quality(scores: ArrayLike, failed: ArrayLike, *, bins: int = 10) -> CriticQuality:
    """AUROC, ECE (``bins`` equal-width bins, the last one closed) and the reliability table."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    p, y = _labeled(scores, failed, need_both=True)
    n_failed = int(y.sum())
    n_ok = p.size - n_failed
    # Mann-Whitney: AUROC = P(score of a failed run > score of a successful one) + P(tie) / 2, from midranks.
    ranks = stats.rankdata(p)
    auroc = (float(ranks[y == 1.0].sum()) - n_failed * (n_failed + 1) / 2) / (n_failed * n_ok)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    score_sums = np.bincount(idx, weights=p, minlength=bins)
    fail_sums = np.bincount(idx, weights=y, minlength=bins)
    table = []
    ece = 0.0
    for k in range(bins):
        c = int(counts[k])
        mean = float(score_sums[k] / c) if c else None
        rate = float(fail_sums[k] / c) if c else None
        if mean is not None and rate is not None:
            ece += c / p.size * abs(mean - rate)
        table.append(ReliabilityBin(k / bins, (k + 1) / bins, c, mean, rate))
    brier = float(np.mean((p - y) ** 2))
    return CriticQuality(p.size, n_failed, float(auroc), float(ece), brier, tuple(table))


def labeled_verdicts(store: RunReader, guard_key: str) -> tuple[FloatArray, NDArray[np.bool_]]:
    """``(p_fail, failed)`` for every recorded verdict of the guard's runs that have an outcome.

    Steps that ended in a critic error (no verdict) and runs without an outcome are skipped.
    """
    scores: list[float] = []
    failed: list[bool] = []
    for run in store.runs(guard_key):
        outcome = store.get_outcome(run.run_id)
        if outcome is None:
            continue
        for step in store.steps_of(run.run_id):
            if step.p_fail is not None:
                scores.append(step.p_fail)
                failed.append(not outcome.success)
    return np.asarray(scores, dtype=np.float64), np.asarray(failed, dtype=np.bool_)
