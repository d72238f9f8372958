"""Calibration: a deliberately miscalibrated model's probabilities, mapped by a calibrator learned on
one half of the rows, are better calibrated on the other half; the map is plain numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flywheel.config import GatesConfig
from flywheel.registry.gates import evaluate_gates
from flywheel.training import calibration, evaluation


def _miscalibrated(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities ``q``, and the overconfident-for-positives ``q ** 0.3``
    a class-weighted model would give (same ranking, wrong values)."""
    rng = np.random.default_rng(seed)
    q = rng.beta(1, 3, rows)
    return (rng.random(rows) < q).astype(int), q**0.3


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_improves_the_calibration_error_on_new_rows(method: str) -> None:
    y_fit, p_fit = _miscalibrated(5000, 0)
    y, p = _miscalibrated(5000, 1)
    calibrator = calibration.fit(method, y_fit, p_fit)
    before = calibration.expected_calibration_error(y, p)
    after = calibration.expected_calibration_error(y, calibrator.apply(p))
    assert before > 0.2 and after < 0.03, (before, after)
    brier_before = np.mean((p - y) ** 2)
    assert np.mean((calibrator.apply(p) - y) ** 2) < brier_before
    if method == "platt":  # a monotone logistic map keeps the ranking exactly
        assert evaluation.compute_metrics(y, calibrator.apply(p), 0.5)["roc_auc"] == pytest.approx(
            evaluation.compute_metrics(y, p, 0.5)["roc_auc"], abs=1e-12
        )


def test_a_calibrator_round_trips_through_json() -> None:
    y, p = _miscalibrated(2000, 2)
    for method in ("isotonic", "platt"):
        calibrator = calibration.fit(method, y, p)
        again = calibration.Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
        np.testing.assert_array_equal(again.apply(p), calibrator.apply(p))


def test_multiclass_calibration_is_per_class_and_rows_still_sum_to_one() -> None:
    rng = np.random.default_rng(3)
    rows = 6000
    true = rng.dirichlet([1, 1, 1], rows)
    y = np.array([rng.choice(3, p=row) for row in true])
    sharpened = true**3 / (true**3).sum(axis=1, keepdims=True)  # overconfident
    half = rows // 2
    calibrator = calibration.fit("isotonic", y[:half], sharpened[:half])
    mapped = calibrator.apply(sharpened[half:])
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0, atol=1e-9)
    assert len(calibrator.maps) == 3
    before = calibration.expected_calibration_error(y[half:], sharpened[half:])
    after = calibration.expected_calibration_error(y[half:], mapped)
    assert after < before / 2, (before, after)


def test_reliability_curve_bins_every_row() -> None:
    y, p = _miscalibrated(1000, 4)
    curve = calibration.reliability(y, p, bins=10)
    assert sum(b["rows"] for b in curve) == 1000
    assert all(b["low"] <= b["mean_probability"] <= b["high"] for b in curve)


def test_the_gate_may_bound_the_calibration_error() -> None:
    y, p = _miscalibrated(2000, 5)
    metrics = evaluation.compute_metrics(y, p, 0.5)
    checks = {c.name: c for c in evaluate_gates(GatesConfig(max_calibration_error=0.05), metrics, 1.0, 1.0)}
    assert checks["ece"].value == pytest.approx(calibration.expected_calibration_error(y, p))
    assert not checks["ece"].passed
    assert "ece" not in {c.name for c in evaluate_gates(GatesConfig(), metrics, 1.0, 1.0)}


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_a_class_the_calibration_rows_lack_keeps_its_probabilities(method: str) -> None:
    """A map fitted to a class no row holds would send it to zero: it would never be predicted again."""
    rng = np.random.default_rng(6)
    p = rng.dirichlet([1, 1, 1], 600)
    y = np.where(p[:, 0] > p[:, 1], 0, 1)  # class 2 never occurs among these rows
    calibrator = calibration.fit(method, y, p)
    mapped = calibrator.apply(p)
    assert (mapped.argmax(axis=1) == 2).sum() > 0
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0, atol=1e-9)
    one_class = calibration.fit(method, np.ones(50, dtype=int), p[:50, 0])
    np.testing.assert_allclose(one_class.apply(p[:50, 0]), p[:50, 0], atol=1e-6)


def test_a_calibration_gate_on_a_run_without_the_figure_names_it() -> None:
    """A run evaluated before calibration has no ``ece``: the gate says so instead of a KeyError."""
    from flywheel.errors import ConfigError

    with pytest.raises(ConfigError, match="ece"):
        evaluate_gates(GatesConfig(max_calibration_error=0.05), {"roc_auc": 0.8, "pr_auc": 0.6}, 1.0, 1.0)
