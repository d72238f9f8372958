"""The registry's paired bootstrap: exact weighted AUCs, the same as scikit-learn on the drawn rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flywheel.training.evaluation import _ranked, bootstrap_auc_difference, weighted_auc


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
    result = bootstrap_auc_difference(y, p_new, p_old, samples=200, confidence=0.95, seed=1)
    assert result["delta"] == pytest.approx(roc_auc_score(y, p_new) - roc_auc_score(y, p_old))
    assert result["ci_low"] < result["delta"] < result["ci_high"]
    assert bootstrap_auc_difference(y, p_new, p_old, samples=200, confidence=0.95, seed=1) == result
    same = bootstrap_auc_difference(y, p_old, p_old, samples=60, confidence=0.95)
    assert same == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_a_sample_with_one_class_is_left_out() -> None:
    y = np.array([1] + [0] * 9)  # most samples of 10 rows draw the one positive; some do not
    p = np.linspace(0, 1, 10)
    result = bootstrap_auc_difference(y, p, p[::-1], samples=200, confidence=0.9)
    assert np.isfinite(result["ci_low"]) and np.isfinite(result["ci_high"])
