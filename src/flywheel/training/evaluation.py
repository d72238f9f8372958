"""Evaluation of predicted probabilities: metrics, the decision threshold, and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm


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


def compute_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
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
        "positive_rate": float(y.mean()),
        "threshold": float(threshold),
        "top_decile_lift": lift,
        "top_decile_capture": capture,
    }


def bootstrap_auc_difference(
    y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, samples: int, confidence: float, seed: int = 0
) -> dict[str, float]:
    """ROC-AUC(new) − ROC-AUC(old) on the same rows, with a paired bootstrap confidence interval.

    Each bootstrap sample draws the rows with replacement; its AUCs are computed exactly from how
    often each row was drawn (:func:`weighted_auc`), a few samples at a time as one array operation,
    instead of one scikit-learn call per sample and model."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=int)
    new, old = _ranked(p_new, y), _ranked(p_old, y)
    deltas: list[np.ndarray] = []
    for start in range(0, samples, BOOTSTRAP_CHUNK):
        draws = rng.integers(0, len(y), (min(BOOTSTRAP_CHUNK, samples - start), len(y)))
        counts = np.stack([np.bincount(rows, minlength=len(y)) for rows in draws]).astype(float)
        both = (counts @ y > 0) & (counts @ (1 - y) > 0)  # a sample with one class has no AUC
        deltas.append((weighted_auc(new, counts) - weighted_auc(old, counts))[both])
    spread = np.concatenate(deltas)
    if spread.size == 0:
        raise ValueError(
            f"none of {samples} bootstrap samples of {len(y)} rows holds both classes; "
            "the comparison needs a test split with both classes"
        )
    alpha = (1 - confidence) / 2
    return {
        "delta": float(skm.roc_auc_score(y, p_new) - skm.roc_auc_score(y, p_old)),
        "ci_low": float(np.quantile(spread, alpha)),
        "ci_high": float(np.quantile(spread, 1 - alpha)),
    }


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


def plots(
    y: np.ndarray, p: np.ndarray, threshold: float, importance: dict[str, float], folder: Path
) -> list[Path]:
    """ROC, PR, calibration, confusion matrix, feature importance and gains curves as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig: Any, name: str) -> None:
        path = folder / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

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

    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(predicted, observed, "o-")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
    save(fig, "calibration_curve")

    matrix = skm.confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:,}", ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xlabel="predicted",
        ylabel="actual",
        title=f"confusion matrix @ {threshold:.2f}",
    )
    save(fig, "confusion_matrix")

    top = sorted(importance.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(5, 0.25 * len(top) + 1))
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set(title="feature importance")
    save(fig, "feature_importance")

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
