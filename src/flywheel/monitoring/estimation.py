"""Performance estimated before labels arrive: confidence-based performance estimation (CBPE).

A calibrated probability is the chance that its row is positive, so every count a metric is built
from has an expected value given the probabilities alone: a row scored ``p`` at or above the
threshold is a true positive with probability ``p`` and a false positive with probability ``1 − p``.
The expected ROC-AUC is the expected share of (positive, negative) pairs ranked the right way; the
expected average precision, accuracy and F1 follow from the expected counts. A multiclass model's
figures are one-vs-rest over each class's probability (macro-averaged); its expected accuracy is the
mean probability of the predicted class.

The assumption is stated, not hidden: the estimate holds while ``P(y | x)`` is what the model learned
(no concept drift) and the probabilities are calibrated. Covariate shift is what it handles; a change
in how features relate to the outcome it cannot see. Where labels later land, the realized figure is
checked against the band the estimate gave (:meth:`Reference.band`) and a figure outside it says the
assumption broke.

The band is the spread of ``realized − estimated`` over random chunks of the reference (the test
split: labelled, never seen in fitting or calibration), scaled from the chunk's size to the period's
by ``1/√n``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BINARY_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1")
MULTICLASS_METRICS = ("roc_auc", "pr_auc", "accuracy", "macro_f1")


def metrics_of(classes: Sequence[str]) -> tuple[str, ...]:
    """The metrics estimated for a use case with these classes (none: binary)."""
    return MULTICLASS_METRICS if classes else BINARY_METRICS


def expected_metrics(p: np.ndarray, threshold: float | np.ndarray = 0.5) -> dict[str, float]:
    """The expected metrics of calibrated probabilities ``p`` (1-D: binary, a decision at
    ``threshold``, which may differ per row; 2-D: multiclass, the most probable class). A metric with
    no expected value (an AUC of one row) is left out."""
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        return {}
    if p.ndim == 2:
        values = _expected_multiclass(p)
    else:
        chosen = p >= threshold
        tp, fp, fn = p[chosen].sum(), (1 - p[chosen]).sum(), p[~chosen].sum()
        auc, average_precision = _ranking(p, p)
        values = {
            "roc_auc": auc,
            "pr_auc": average_precision,
            "accuracy": float(np.where(chosen, p, 1 - p).mean()),
            "f1": _f1(tp, fp, fn),
        }
    return {metric: value for metric, value in values.items() if np.isfinite(value)}


def realized_metrics(y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray = 0.5) -> dict[str, float]:
    """The same metrics on labels ``y``: what :func:`expected_metrics` estimates (an AUC needs both
    classes among the rows; without them it is left out)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if len(y) == 0:
        return {}
    if p.ndim == 2:
        return _realized_multiclass(y, p)
    chosen = p >= threshold
    tp, fp, fn = (y[chosen] == 1).sum(), (y[chosen] == 0).sum(), (y[~chosen] == 1).sum()
    out = {"accuracy": float((chosen == (y == 1)).mean()), "f1": _f1(tp, fp, fn)}
    if 0 < y.sum() < len(y):
        auc, average_precision = _ranking(p, y)
        out = {"roc_auc": auc, "pr_auc": average_precision, **out}
    return out


def expected_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC of ``score`` where each row is positive with probability ``positive`` (0/1 labels give
    the realized AUC, ties counted half): expected right-ordered pairs over expected pairs, a row never
    paired with itself."""
    return _ranking(score, positive)[0]


def expected_average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ``score`` with expected positives ``positive``: precision at each distinct
    score (highest first), weighted by the recall it adds."""
    return _ranking(score, positive)[1]


def _ranking(score: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The (expected) ROC-AUC and average precision from one sort: the rows grouped by distinct
    score, each group's (expected) positives and negatives."""
    score = np.asarray(score, dtype=float)
    order = np.argsort(score)  # ties are grouped below: their order within a group is moot
    s, w = score[order], np.asarray(positive, dtype=float)[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    pos = np.add.reduceat(w, starts)
    neg = np.add.reduceat(1 - w, starts)
    below = np.cumsum(neg) - neg
    self_pairs = (w * (1 - w)).sum()
    pairs = pos.sum() * neg.sum() - self_pairs
    auc = float(((pos * (below + 0.5 * neg)).sum() - 0.5 * self_pairs) / pairs) if pairs > 0 else float("nan")
    # highest score first: precision at each group's end, weighted by the positives it adds
    gained = pos[::-1]
    total = gained.sum()
    precision = np.cumsum(gained) / np.cumsum((pos + neg)[::-1])
    average_precision = float((precision * gained).sum() / total) if total > 0 else float("nan")
    return auc, average_precision


def _f1(tp: float, fp: float, fn: float) -> float:
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else 0.0


def _expected_multiclass(p: np.ndarray) -> dict[str, float]:
    predicted = p.argmax(axis=1)
    ranked, f1s = [], []
    for k in range(p.shape[1]):
        chosen = predicted == k
        ranked.append(_ranking(p[:, k], p[:, k]))
        f1s.append(_f1(p[chosen, k].sum(), (1 - p[chosen, k]).sum(), p[~chosen, k].sum()))
    with warnings.catch_warnings():  # a class no row gives any probability has no AUC
        warnings.simplefilter("ignore", RuntimeWarning)
        auc, precision = (float(value) for value in np.nanmean(np.array(ranked), axis=0))
    return {
        "roc_auc": auc,
        "pr_auc": precision,
        "accuracy": float(p.max(axis=1).mean()),
        "macro_f1": float(np.mean(f1s)),
    }


def _realized_multiclass(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    predicted = p.argmax(axis=1)
    present = [k for k in range(p.shape[1]) if 0 < (y == k).sum() < len(y)]
    f1s = [
        _f1(
            ((predicted == k) & (y == k)).sum(),
            ((predicted == k) & (y != k)).sum(),
            ((predicted != k) & (y == k)).sum(),
        )
        for k in range(p.shape[1])
    ]
    out = {"accuracy": float((predicted == y).mean()), "macro_f1": float(np.mean(f1s))}
    if present:
        auc, precision = np.mean([_ranking(p[:, k], y == k) for k in present], axis=0)
        out = {"roc_auc": float(auc), "pr_auc": float(precision), **out}
    return out


@dataclass
class Reference:
    """The estimator's error on the reference: the standard deviation of ``realized − estimated`` per
    metric over random chunks of ``chunk`` rows of the ``rows`` reference rows, and its mean (a
    calibrated model's is near zero)."""

    chunk: int
    rows: int
    sigma: dict[str, float] = field(default_factory=dict)
    bias: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        y: np.ndarray,
        p: np.ndarray,
        threshold: float | np.ndarray = 0.5,
        chunk: int | None = None,
        samples: int = 100,
        seed: int = 0,
    ) -> Reference:
        """Measure the estimator on ``samples`` chunks drawn (without replacement inside a chunk)
        from the labelled reference rows ``y``, ``p`` (a chunk is at most half of them: a chunk of
        every row would have no spread)."""
        y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
        if len(y) < 20:
            raise ValueError(f"a reference needs at least 20 labelled rows, got {len(y)}")
        size = min(chunk or max(10, min(len(y) // 4, 2000)), len(y) // 2)
        thresholds = np.broadcast_to(np.asarray(threshold, dtype=float), len(y))
        rng = np.random.default_rng(seed)
        errors: dict[str, list[float]] = {}
        for _ in range(samples):
            rows = rng.choice(len(y), size=size, replace=False)
            expected = expected_metrics(p[rows], thresholds[rows])
            for metric, value in realized_metrics(y[rows], p[rows], thresholds[rows]).items():
                if np.isfinite(value) and np.isfinite(expected.get(metric, np.nan)):
                    errors.setdefault(metric, []).append(value - expected[metric])
        # chunks of one finite reference vary less than samples of the population: undo that
        finite = np.sqrt(max(1 - size / len(y), 0.05))
        return cls(
            chunk=size,
            rows=len(y),
            sigma={m: float(np.std(e, ddof=1) / finite) for m, e in errors.items() if len(e) > 1},
            bias={m: float(np.mean(e)) for m, e in errors.items() if e},
        )

    def band(
        self, metric: str, estimate: float, rows: int, sigmas: float = 3.0
    ) -> tuple[float, float] | None:
        """Where a realized ``metric`` of ``rows`` rows should land around ``estimate`` while the
        assumption holds: ± ``sigmas`` standard deviations of the estimator's error at that size,
        plus the error the calibration itself carries from its finite reference (it does not shrink
        with a bigger period: without it a period of 500,000 rows gets a band narrower than the
        calibration is exact)."""
        if metric not in self.sigma or rows <= 0:
            return None
        spread = sigmas * self.sigma[metric] * np.sqrt(self.chunk / rows + self.chunk / self.rows)
        return float(max(estimate - spread, 0.0)), float(min(estimate + spread, 1.0))

    def to_dict(self) -> dict[str, object]:
        return {"chunk": self.chunk, "rows": self.rows, "sigma": self.sigma, "bias": self.bias}
