"""The registry's paired bootstrap: exact weighted AUCs, the same as scikit-learn on the drawn rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flywheel.training.evaluation import _ranked, bootstrap_difference, weighted_auc


@pytest.fixture
def rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.3).astype(int)
    p_new = np.round(np.clip(0.3 * y + rng.random(2000) * 0.8, 0, 1), 1)  # rounded: many ties
    p_old = np.clip(0.2 * y + rng.random(2000) * 0.8, 0, 1)
    return y, p_new, p_old


def test_weighted_auc_equals_sklearn_on_the_drawn_rows(rows) -> None:
    y, p, _ = rows
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(y), (5, len(y)))
    counts = np.stack([np.bincount(d, minlength=len(y)) for d in draws]).astype(float)
    fast = weighted_auc(_ranked(p, y), counts)
    for sample, rows_drawn in enumerate(draws):
        assert fast[sample] == pytest.approx(roc_auc_score(y[rows_drawn], p[rows_drawn]), abs=1e-12)
    assert weighted_auc(_ranked(p, y), np.ones((1, len(y))))[0] == pytest.approx(
        roc_auc_score(y, p), abs=1e-12
    )


def test_the_interval_brackets_the_difference_and_is_seeded(rows) -> None:
    y, p_new, p_old = rows
    result = bootstrap_difference(y, p_new, p_old, samples=200, confidence=0.95, seed=1)
    assert result["delta"] == pytest.approx(roc_auc_score(y, p_new) - roc_auc_score(y, p_old))
    assert result["ci_low"] < result["delta"] < result["ci_high"]
    assert bootstrap_difference(y, p_new, p_old, samples=200, confidence=0.95, seed=1) == result
    same = bootstrap_difference(y, p_old, p_old, samples=60, confidence=0.95)
    assert same == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_a_sample_with_one_class_is_left_out() -> None:
    y = np.array([1] + [0] * 9)  # most samples of 10 rows draw the one positive; some do not
    p = np.linspace(0, 1, 10)
    result = bootstrap_difference(y, p, p[::-1], samples=200, confidence=0.9)
    assert np.isfinite(result["ci_low"]) and np.isfinite(result["ci_high"])


@pytest.fixture(scope="module")
def three_classes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 600)
    signal = np.eye(3)[y] * 1.5
    p_new = np.exp(signal + rng.normal(0, 1, (600, 3)))
    p_old = np.exp(0.5 * signal + rng.normal(0, 1, (600, 3)))
    return y, p_new / p_new.sum(1, keepdims=True), p_old / p_old.sum(1, keepdims=True)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "macro_f1", "log_loss", "brier"])
def test_each_sample_metric_equals_sklearn_on_the_drawn_rows(three_classes, metric: str) -> None:
    """The vectorized per-sample metrics of the comparison equal the evaluation's metrics on the rows a
    sample drew (repeated as often as drawn), for multiclass and binary probabilities."""
    from flywheel.training.evaluation import _Scored, compute_metrics

    y, p, _ = three_classes
    drawn = np.random.default_rng(5).integers(0, len(y), len(y))
    counts = np.bincount(drawn, minlength=len(y)).astype(float)[None, :]
    expected = compute_metrics(y[drawn], p[drawn], 0.5)[metric]
    assert _Scored(y, p).metric(metric, counts)[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    binary_y, binary_p = (y == 2).astype(int), p[:, 2]
    expected = compute_metrics(binary_y[drawn], binary_p[drawn], 0.5)
    expected["macro_f1"] = expected["f1"]
    got = _Scored(binary_y, binary_p).metric(metric, counts)[0]
    assert got == pytest.approx(expected[metric], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("metric", ["macro_f1", "log_loss"])
def test_a_better_multiclass_model_wins_on_the_configured_metric(three_classes, metric: str) -> None:
    y, p_new, p_old = three_classes
    result = bootstrap_difference(y, p_new, p_old, samples=200, confidence=0.95, seed=1, metric=metric)
    assert result["delta"] > 0 and result["ci_low"] > 0  # for a loss, positive means lower
    reverse = bootstrap_difference(y, p_old, p_new, samples=200, confidence=0.95, seed=1, metric=metric)
    assert reverse["delta"] == pytest.approx(-result["delta"]) and reverse["ci_high"] < 0


def test_an_unknown_comparison_metric_is_named() -> None:
    with pytest.raises(ValueError, match="pr_auc"):
        bootstrap_difference(
            np.array([0, 1]), np.array([0.2, 0.8]), np.array([0.2, 0.8]), 50, 0.9, metric="pr_auc"
        )
