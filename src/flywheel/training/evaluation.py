"""Evaluation of predicted probabilities: metrics, the decision threshold, the paired bootstrap
comparison of two models on the same rows, and plots.

Binary probabilities are 1-D (the positive class); multiclass probabilities are 2-D, a column per
class, and the predicted class is the most probable one (no threshold). Multiclass ROC-AUC and
PR-AUC are one-vs-rest, macro-averaged over the classes present in the rows."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from flywheel.training.calibration import expected_calibration_error


def choose_threshold(y: np.ndarray, p: np.ndarray, setting: float | str) -> float:
    """A fixed threshold, or the one maximizing F1 on the given (validation) rows."""
    if setting != "max_f1":
        return float(setting)
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def lift_at(y: np.ndarray, p: np.ndarray, share: float = 0.1) -> tuple[float, float]:
    """Lift and capture rate of the top ``share`` of rows by predicted probability."""
    top = np.argsort(-p, kind="stable")[: max(1, round(share * len(p)))]
    rate = y[top].mean()
    return float(rate / max(y.mean(), 1e-12)), float(y[top].sum() / max(y.sum(), 1))


def compute_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, classes: Sequence[str] = ()
) -> dict[str, float]:
    """Metrics of probabilities ``p`` for labels ``y``; multiclass (2-D ``p``) names per-class
    metrics after ``classes``."""
    if np.ndim(p) == 2:
        return multiclass_metrics(y, p, classes)
    y = np.asarray(y, dtype=int)
    predicted = (p >= threshold).astype(int)
    lift, capture = lift_at(y, p)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()),
        "threshold": float(threshold),
        "top_decile_lift": lift,
        "top_decile_capture": capture,
    }


def multiclass_metrics(y: np.ndarray, p: np.ndarray, classes: Sequence[str] = ()) -> dict[str, float]:
    """Accuracy, macro and weighted F1, log loss, Brier score, classwise calibration error, one-vs-rest
    ROC-AUC and PR-AUC (macro), and precision, recall, F1 and share of each class (``f1_<class>``…)."""
    y = np.asarray(y, dtype=int)
    labels = list(range(p.shape[1]))
    names = class_names(p.shape[1], classes)
    predicted = p.argmax(axis=1)
    present = [k for k in labels if 0 < (y == k).sum() < len(y)]  # a one-vs-rest AUC needs both sides
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0
    )
    values = {
        "roc_auc": float(np.mean([skm.roc_auc_score(y == k, p[:, k]) for k in present])),
        "pr_auc": float(np.mean([skm.average_precision_score(y == k, p[:, k]) for k in present])),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "macro_f1": float(skm.f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(y, predicted, labels=labels, average="weighted", zero_division=0)),
        "log_loss": float(skm.log_loss(y, _floored(p), labels=labels)),
        "brier": float(np.mean(((p - np.eye(len(labels))[y]) ** 2).sum(axis=1))),
        "ece": expected_calibration_error(y, p),
    }
    for k, name in enumerate(names):
        values.update(
            {
                f"precision_{name}": float(precision[k]),
                f"recall_{name}": float(recall[k]),
                f"f1_{name}": float(f1[k]),
                f"share_{name}": float((y == k).mean()),
            }
        )
    return values


def _floored(p: np.ndarray) -> np.ndarray:
    """Probabilities kept off zero (a log loss of one confident mistake is large, not infinite), rows
    still summing to one."""
    floored = np.clip(p, 1e-7, 1)
    return floored / floored.sum(axis=1, keepdims=True)


def class_names(n_classes: int, classes: Sequence[str] = ()) -> list[str]:
    """Metric-safe names of the classes (lower case), or their codes when unnamed."""
    if not classes:
        return [str(k) for k in range(n_classes)]
    return [re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") for name in classes]


def confusion(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> list[list[int]]:
    """The confusion matrix (rows: actual, columns: predicted) of binary labels at ``threshold`` or of
    the most probable class."""
    labels = list(range(p.shape[1])) if np.ndim(p) == 2 else [0, 1]
    predicted = p.argmax(axis=1) if np.ndim(p) == 2 else (p >= threshold).astype(int)
    return skm.confusion_matrix(y, predicted, labels=labels).tolist()


def probability_columns(p: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Probabilities as frame columns: ``prefix`` (binary) or ``prefix_0 … prefix_<k-1>`` (a class each)."""
    if np.ndim(p) == 1:
        return {prefix: p}
    return {f"{prefix}_{k}": p[:, k] for k in range(p.shape[1])}


def read_probabilities(frame: Any, prefix: str) -> np.ndarray:
    """The probabilities :func:`probability_columns` wrote into ``frame``."""
    if prefix in frame.columns:
        return frame[prefix].to_numpy(dtype=float)
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)")
    found = {int(m.group(1)): c for c in frame.columns if (m := pattern.fullmatch(c))}
    if not found:
        raise KeyError(f"no {prefix} column(s) in {list(frame.columns)}")
    return frame[[found[k] for k in sorted(found)]].to_numpy(dtype=float)


# Metrics the paired bootstrap compares (a loss improves downwards)
COMPARABLE = ("roc_auc", "accuracy", "macro_f1", "log_loss", "brier")
LOSSES = frozenset({"log_loss", "brier"})


def bootstrap_difference(
    y: np.ndarray,
    p_new: np.ndarray,
    p_old: np.ndarray,
    samples: int,
    confidence: float,
    seed: int = 0,
    metric: str = "roc_auc",
) -> dict[str, float]:
    """How much better ``p_new`` is than ``p_old`` on ``metric`` on the same rows (for a loss,
    old − new: positive is always better), with a paired bootstrap confidence interval.

    Each bootstrap sample draws the rows with replacement; its metric is computed exactly from how
    often each row was drawn (:func:`sample_metric`), a few samples at a time as one array operation,
    instead of one scikit-learn call per sample and model."""
    if metric not in COMPARABLE:
        raise ValueError(f"cannot compare models on {metric!r}; expected one of {list(COMPARABLE)}")
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=int)
    sign = -1.0 if metric in LOSSES else 1.0
    new, old = _Scored(y, p_new), _Scored(y, p_old)
    deltas: list[np.ndarray] = []
    for start in range(0, samples, BOOTSTRAP_CHUNK):
        draws = rng.integers(0, len(y), (min(BOOTSTRAP_CHUNK, samples - start), len(y)))
        counts = np.stack([np.bincount(rows, minlength=len(y)) for rows in draws]).astype(float)
        delta = sign * (new.metric(metric, counts) - old.metric(metric, counts))
        deltas.append(delta[np.isfinite(delta)])  # a sample with one class has no AUC
    spread = np.concatenate(deltas)
    if spread.size == 0:
        raise ValueError(
            f"none of {samples} bootstrap samples of {len(y)} rows holds two classes; "
            "the comparison needs a test split with more than one class"
        )
    everyone = np.ones((1, len(y)))
    alpha = (1 - confidence) / 2
    return {
        "delta": float(sign * (new.metric(metric, everyone) - old.metric(metric, everyone))[0]),
        "ci_low": float(np.quantile(spread, alpha)),
        "ci_high": float(np.quantile(spread, 1 - alpha)),
    }


class _Scored:
    """One model's probabilities on fixed rows, prepared once for any number of bootstrap samples."""

    def __init__(self, y: np.ndarray, p: np.ndarray):
        p = np.asarray(p, dtype=float)
        self.y, self.p = y, p
        columns = p if p.ndim == 2 else np.column_stack([1 - p, p])
        self.onehot = np.eye(columns.shape[1])[y]
        self.predicted = columns.argmax(axis=1) if p.ndim == 2 else (p >= 0.5).astype(int)
        self.correct = (self.predicted == y).astype(float)
        self.loss = -np.log(np.clip((columns * self.onehot).sum(axis=1), 1e-7, 1))
        self.brier = ((columns - self.onehot) ** 2).sum(axis=1) if p.ndim == 2 else (p - y) ** 2
        # one ranking per class scored one-vs-rest (binary: the positive class alone)
        self.ranked = (
            [(k, _ranked(p[:, k], (y == k).astype(int))) for k in range(p.shape[1])]
            if p.ndim == 2
            else [(1, _ranked(p, y))]
        )

    def metric(self, name: str, counts: np.ndarray) -> np.ndarray:
        """``name`` on each sample (a row of ``counts``: how often each row was drawn)."""
        drawn = counts.sum(axis=1)
        if name == "accuracy":
            return counts @ self.correct / drawn
        if name == "log_loss":
            return counts @ self.loss / drawn
        if name == "brier":
            return counts @ self.brier / drawn
        if name == "macro_f1":
            return self._macro_f1(counts)
        with np.errstate(invalid="ignore"):
            aucs = np.stack([weighted_auc(ranked, counts) for _, ranked in self.ranked])
        # classes absent from a sample have no one-vs-rest AUC: average over the others
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(aucs, axis=0) if len(self.ranked) > 1 else aucs[0]

    def _macro_f1(self, counts: np.ndarray) -> np.ndarray:
        classes = self.onehot.shape[1]
        scores = []
        for k in range(classes):
            actual, chosen = self.y == k, self.predicted == k
            tp = counts @ (actual & chosen)
            fp = counts @ (~actual & chosen)
            fn = counts @ (actual & ~chosen)
            denominator = 2 * tp + fp + fn
            scores.append(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0))
        return np.mean(scores, axis=0) if classes > 2 else scores[1]


BOOTSTRAP_CHUNK = 25  # samples per array operation: bounds memory at ~chunk × rows × 8 bytes × 3


def _ranked(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows in score order, the labels in that order, and where each group of tied scores starts."""
    order = np.argsort(np.asarray(p, dtype=float), kind="stable")
    scores = np.asarray(p, dtype=float)[order]
    starts = np.flatnonzero(np.concatenate([[True], scores[1:] != scores[:-1]]))
    return order, y[order], starts


def weighted_auc(ranked: tuple[np.ndarray, np.ndarray, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``counts`` (how often each row is in a sample), ties counted half: the
    probability that a drawn positive outscores a drawn negative, from the rows sorted once."""
    order, y, starts = ranked
    weights = counts[:, order]
    positives = np.add.reduceat(weights * y, starts, axis=1)
    negatives = np.add.reduceat(weights * (1 - y), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs


def _saver(folder: Path, written: list[Path]) -> Any:
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> None:
        path = folder / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    return save


def _importance_plot(importance: dict[str, float], save: Any) -> None:
    import matplotlib.pyplot as plt

    top = sorted(importance.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(5, 0.25 * len(top) + 1))
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set(title="feature importance")
    save(fig, "feature_importance")


def _confusion_plot(matrix: np.ndarray, names: Sequence[str], title: str, save: Any) -> None:
    import matplotlib.pyplot as plt

    size = len(names)
    fig, ax = plt.subplots(figsize=(1.2 * size + 1.6, 1.1 * size + 1.4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:,}", ha="center", va="center")
    ax.set(
        xticks=range(size),
        yticks=range(size),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="actual",
        title=title,
    )
    save(fig, "confusion_matrix")


def multiclass_plots(
    y: np.ndarray, p: np.ndarray, importance: dict[str, float], folder: Path, classes: Sequence[str] = ()
) -> list[Path]:
    """One-vs-rest ROC curves, a calibration curve per class, the confusion matrix of the most
    probable class and feature importance, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    save = _saver(folder, written)
    names = list(classes) or [str(k) for k in range(p.shape[1])]
    present = [k for k in range(p.shape[1]) if 0 < (y == k).sum() < len(y)]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for k in present:
        fpr, tpr, _ = skm.roc_curve(y == k, p[:, k])
        ax.plot(fpr, tpr, label=f"{names[k]} (AUC {skm.roc_auc_score(y == k, p[:, k]):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest")
    ax.legend()
    save(fig, "roc_curve")

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for k in present:
        observed, predicted = calibration_curve(y == k, p[:, k], n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, "o-", label=names[k])
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration per class")
    ax.legend()
    save(fig, "calibration_curve")
    _confusion_plot(np.asarray(confusion(y, p)), names, "confusion matrix (most probable class)", save)
    _importance_plot(importance, save)
    return written


def plots(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    importance: dict[str, float],
    folder: Path,
    classes: Sequence[str] = (),
    p_uncalibrated: np.ndarray | None = None,
) -> list[Path]:
    """ROC, PR, calibration (before and after, given the model's own ``p_uncalibrated``), confusion
    matrix, feature importance and gains curves as PNG files (multiclass: :func:`multiclass_plots`)."""
    if np.ndim(p) == 2:
        return multiclass_plots(y, p, importance, folder, classes)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    save = _saver(folder, written)

    fpr, tpr, _ = skm.roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {skm.roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend()
    save(fig, "roc_curve")

    precision, recall, _ = skm.precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title=f"PR (AP {skm.average_precision_score(y, p):.3f})")
    save(fig, "pr_curve")

    fig, ax = plt.subplots(figsize=(4.5, 4))
    shown = {"calibrated": p} if p_uncalibrated is None else {"uncalibrated": p_uncalibrated, "calibrated": p}
    for name, values in shown.items():
        observed, predicted = calibration_curve(y, values, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, "o-", label=name)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
    ax.legend()
    save(fig, "calibration_curve")

    matrix = skm.confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    _confusion_plot(matrix, ["0", "1"], f"confusion matrix @ {threshold:.2f}", save)
    _importance_plot(importance, save)

    order = np.argsort(-p, kind="stable")
    gains = np.concatenate([[0], np.cumsum(np.asarray(y)[order]) / max(np.sum(y), 1)])
    share = np.linspace(0, 1, len(gains))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(share, gains, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(
        xlabel="share of rows acted on (highest first)",
        ylabel="share of positives caught",
        title="cumulative gains",
    )
    ax.legend()
    save(fig, "gains_curve")
    return written
