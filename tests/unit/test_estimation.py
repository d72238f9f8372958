"""Performance estimation (CBPE): on calibrated scores with labels drawn from them, the estimate lands
within its band of the realized figures (binary and multiclass); labels drawn from other probabilities
land outside it; the AUC and average precision of 0/1 labels are scikit-learn's, ties included; the band
narrows as 1/√rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from flywheel.monitoring import estimation
from flywheel.monitoring.estimation import Reference, expected_metrics, realized_metrics


def _binary(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated scores (a model's skewed spread, rounded to 3 places so ties occur) and labels drawn
    from them."""
    rng = np.random.default_rng(seed)
    p = np.round(rng.beta(1.2, 2.5, rows), 3)
    return (rng.random(rows) < p).astype(int), p


def _multiclass(rows: int, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(classes, 0.6), rows)
    y = (rng.random(rows)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return y, p


def _outside(reference: Reference, y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, bool]:
    estimate, actual = expected_metrics(p, threshold), realized_metrics(y, p, threshold)
    out = {}
    for metric, value in actual.items():
        low, high = reference.band(metric, estimate[metric], len(y))
        out[metric] = not low <= value <= high
    return out


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_a_calibrated_binary_models_metrics_are_recovered_within_the_band(threshold: float) -> None:
    reference = Reference.fit(*_binary(20_000, 0), threshold)
    y, p = _binary(50_000, 1)
    estimate, actual = expected_metrics(p, threshold), realized_metrics(y, p, threshold)
    assert set(estimate) == set(actual) == set(estimation.BINARY_METRICS)
    assert not any(_outside(reference, y, p, threshold).values()), (estimate, actual)
    for metric in estimation.BINARY_METRICS:  # and close in absolute terms, not only by a wide band
        assert estimate[metric] == pytest.approx(actual[metric], abs=0.01), metric
    assert reference.chunk == 2000 and all(abs(b) < 0.01 for b in reference.bias.values()), reference.bias


def test_a_calibrated_multiclass_models_metrics_are_recovered_within_the_band() -> None:
    reference = Reference.fit(*_multiclass(12_000, 0))
    y, p = _multiclass(30_000, 1)
    estimate, actual = expected_metrics(p), realized_metrics(y, p)
    assert set(estimate) == set(actual) == set(estimation.MULTICLASS_METRICS)
    assert not any(_outside(reference, y, p, 0.5).values()), (estimate, actual)
    for metric in estimation.MULTICLASS_METRICS:
        assert estimate[metric] == pytest.approx(actual[metric], abs=0.01), metric


def test_a_planted_concept_shift_falls_outside_the_band() -> None:
    """The scores stay; the labels now follow other probabilities (the relation weakened and the
    base rate up): what no estimate from the scores can see, the realized figures must show."""
    reference = Reference.fit(*_binary(20_000, 0), 0.5)
    _, p = _binary(20_000, 2)
    rng = np.random.default_rng(3)
    y = (rng.random(len(p)) < 0.3 + 0.4 * p).astype(int)
    outside = _outside(reference, y, p, 0.5)
    assert outside["roc_auc"] and outside["accuracy"] and outside["f1"], outside


def test_a_planted_multiclass_concept_shift_falls_outside_the_band() -> None:
    reference = Reference.fit(*_multiclass(12_000, 0))
    _, p = _multiclass(20_000, 2)
    y, _ = _multiclass(20_000, 3)  # labels from unrelated probabilities
    outside = _outside(reference, y, p, 0.5)
    assert outside["roc_auc"] and outside["accuracy"] and outside["macro_f1"], outside


def test_the_auc_and_average_precision_of_labels_are_scikit_learns_with_ties() -> None:
    rng = np.random.default_rng(4)
    score = np.round(rng.random(3000), 1)  # eleven distinct values: ties everywhere
    y = (rng.random(3000) < score).astype(int)
    assert estimation.expected_auc(score, y) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert estimation.expected_average_precision(score, y) == pytest.approx(
        skm.average_precision_score(y, score), abs=1e-12
    )
    realized = realized_metrics(y, score, 0.5)
    decided = (score >= 0.5).astype(int)
    assert realized["f1"] == pytest.approx(skm.f1_score(y, decided), abs=1e-12)
    assert realized["accuracy"] == pytest.approx(skm.accuracy_score(y, decided), abs=1e-12)


def test_the_expected_auc_of_two_rows_by_hand() -> None:
    """Rows scored 0.2 and 0.8: right order (0.8 positive, 0.2 negative) 0.64, wrong order 0.04; a
    row is never its own pair."""
    p = np.array([0.2, 0.8])
    assert estimation.expected_auc(p, p) == pytest.approx(0.64 / 0.68)


def test_a_per_row_threshold_equal_everywhere_is_the_scalar_one() -> None:
    y, p = _binary(5000, 5)
    row_thresholds = np.full(len(p), 0.4)
    assert expected_metrics(p, row_thresholds) == expected_metrics(p, 0.4)
    assert realized_metrics(y, p, row_thresholds) == realized_metrics(y, p, 0.4)


def test_the_band_narrows_with_the_rows_down_to_the_calibrations_own_precision() -> None:
    """The period's sampling error shrinks as 1/√rows; what the finite reference leaves uncertain
    does not, so the band never narrows past it."""
    reference = Reference.fit(*_binary(8000, 6), 0.5)
    sigma, chunk = reference.sigma["roc_auc"], reference.chunk
    widths = {}
    for rows in (1000, 4000, 16_000, 10_000_000):
        low, high = reference.band("roc_auc", 0.75, rows)
        widths[rows] = high - low
        expected = 2 * 3 * sigma * np.sqrt(chunk / rows + chunk / reference.rows)
        assert widths[rows] == pytest.approx(expected)
    assert widths[1000] > widths[4000] > widths[16_000] > widths[10_000_000]
    floor = 2 * 3 * sigma * np.sqrt(chunk / reference.rows)
    assert widths[10_000_000] == pytest.approx(floor, rel=1e-3)
    assert reference.band("no_such_metric", 0.5, 1000) is None


def test_a_chunk_never_spans_the_whole_reference_and_thresholds_may_differ_per_row() -> None:
    y, p = _binary(400, 7)
    whole = Reference.fit(y, p, 0.5, chunk=len(y))
    assert whole.chunk == len(y) // 2 and all(s > 0 for s in whole.sigma.values())
    assert Reference.fit(y, p, np.full(len(p), 0.5)).sigma == Reference.fit(y, p, 0.5).sigma


def test_a_reference_of_too_few_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 20 labelled rows"):
        Reference.fit(np.array([0, 1] * 5), np.full(10, 0.5))
