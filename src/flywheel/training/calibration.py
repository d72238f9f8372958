"""Probability calibration: a monotone map from a fitted model's probabilities to calibrated ones,
learned on the validation split after fitting, and the figures that show it worked.

The models are fitted with balanced class weights, which inflates the minority class's
probabilities: ranking survives, but a 0.7 does not mean 70 %. ``platt`` fits a logistic curve on the
log-odds (exactly the shape of a class-weight distortion, and it keeps every ranking); ``isotonic``
fits a step-wise monotone map (more flexible, needs more rows, ties close scores). A multiclass
model is calibrated one class against the rest, then each row is renormalized to sum to one.

A calibrator is plain numbers (saved as JSON in the model's ``spec.json``), applied with NumPy alone:
serving loads no pickle and imports no scikit-learn for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

_logger = logging.getLogger(__name__)

Method = Literal["isotonic", "platt"]
EPSILON = 1e-6


@dataclass
class Calibrator:
    """One map per calibrated column (binary: the positive class; multiclass: each class)."""

    method: Method
    maps: list[dict[str, list[float]]]

    def apply(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if p.ndim == 1:
            return self._one(self.maps[0], p)
        columns = np.column_stack([self._one(m, p[:, k]) for k, m in enumerate(self.maps)])
        total = columns.sum(axis=1, keepdims=True)
        # a row every class map sent to zero keeps the model's own probabilities
        return np.where(total > 0, columns / np.where(total > 0, total, 1), p)

    def _one(self, mapping: dict[str, list[float]], p: np.ndarray) -> np.ndarray:
        if self.method == "platt":
            slope, intercept = mapping["coef"]
            return 1 / (1 + np.exp(-(slope * _logit(p) + intercept)))
        return np.interp(p, mapping["x"], mapping["y"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "maps": self.maps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(data["method"], data["maps"])


def fit(method: Method, y: np.ndarray, p: np.ndarray) -> Calibrator:
    """A calibrator of probabilities ``p`` (1-D binary, 2-D a column per class) to labels ``y``.

    A column whose class the rows never (or always) hold has nothing to learn from: it keeps the
    model's own probabilities (a map to a constant would erase that class for good), with a warning."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if method not in ("isotonic", "platt"):
        raise ValueError(f"unknown calibration method {method!r}; expected isotonic or platt")
    columns = [(p, y == 1)] if p.ndim == 1 else [(p[:, k], y == k) for k in range(p.shape[1])]
    fitter = _isotonic if method == "isotonic" else _platt
    maps = []
    for k, (column, hit) in enumerate(columns):
        if hit.all() or not hit.any():
            _logger.warning(
                "calibration: class %d is %s in the %d rows; its probabilities stay as they are",
                k if p.ndim == 2 else 1,
                "every row" if hit.all() else "in none",
                len(y),
            )
            maps.append(IDENTITY[method])
        else:
            maps.append(fitter(column, hit.astype(float)))
    return Calibrator(method, maps)


IDENTITY: dict[str, dict[str, list[float]]] = {
    "isotonic": {"x": [0.0, 1.0], "y": [0.0, 1.0]},
    "platt": {"coef": [1.0, 0.0]},  # the logistic of the log-odds: the probability itself
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def _platt(p: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, solver="lbfgs").fit(_logit(p).reshape(-1, 1), y)
    return {"coef": [float(model.coef_[0, 0]), float(model.intercept_[0])]}


def _isotonic(p: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return {"x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()}


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """The reliability curve: per equal-width probability bin with rows, the mean probability and the
    observed rate (multiclass: of the predicted class, i.e. confidence against accuracy)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if p.ndim == 2:
        confidence, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    else:
        confidence, hit = p, (y == 1).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "rows": int((which == b).sum()),
            "mean_probability": float(confidence[which == b].mean()),
            "observed_rate": float(hit[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: the row-weighted mean gap between probability and observed rate over the reliability
    curve's bins (multiclass: classwise, the mean over the classes' one-vs-rest ECEs)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if p.ndim == 2:
        return float(
            np.mean(
                [expected_calibration_error((y == k).astype(int), p[:, k], bins) for k in range(p.shape[1])]
            )
        )
    curve = reliability(y, p, bins)
    total = sum(b["rows"] for b in curve)
    return float(
        sum(b["rows"] * abs(b["mean_probability"] - b["observed_rate"]) for b in curve) / max(total, 1)
    )


def uncalibrated_figures(y: np.ndarray, p_uncalibrated: np.ndarray) -> dict[str, float]:
    """The Brier score and calibration error of a model's own probabilities, before calibration."""
    onehot = np.eye(p_uncalibrated.shape[1])[y] if p_uncalibrated.ndim == 2 else y
    squared = (p_uncalibrated - onehot) ** 2
    return {
        "uncalibrated_brier": float(np.mean(squared.sum(axis=1) if squared.ndim == 2 else squared)),
        "uncalibrated_ece": expected_calibration_error(y, p_uncalibrated),
    }
