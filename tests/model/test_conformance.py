"""One conformance suite for every model type: the estimator contract, safe saving, MLflow round trip."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from flywheel.config import FlywheelConfig
from flywheel.training import calibration, tracking
from flywheel.training.models import MODEL_TYPES, TabularModel, make_model
from flywheel.training.train import Dataset, load_dataset, log_model
from flywheel.workdir import Workdir

SMALL_PARAMS = {
    "random_forest": {"n_estimators": 20},
    "lightgbm": {"n_estimators": 60},
    "xgboost": {"n_estimators": 60},
    "catboost": {"iterations": 60},
}


@pytest.fixture(scope="module")
def tiny(featured_workdir: Workdir) -> tuple[Dataset, pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    data = load_dataset(featured_workdir)
    X, y = data.xy("train")
    rows = np.random.default_rng(0).choice(len(X), 1500, replace=False)
    Xv, yv = data.xy("valid")
    return data, X.iloc[rows], y[rows], Xv.head(500), yv[:500]


def _fit(model_type: str, tiny, seed: int = 7) -> TabularModel:
    """A fitted model, calibrated as training calibrates it: every path below goes through the map."""
    data, X, y, Xv, yv = tiny
    model = make_model(
        model_type, data.features, data.metadata["categorical_features"], SMALL_PARAMS.get(model_type), seed
    ).fit(X, y, Xv, yv)
    model.calibrator_ = calibration.fit("isotonic", yv, model.predict_proba(Xv))
    return model


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_contract_probabilities_save_load_and_determinism(model_type: str, tiny, tmp_path: Path) -> None:
    Xv = tiny[3]
    model = _fit(model_type, tiny)
    p = model.predict_proba(Xv)
    assert p.shape == (len(Xv),) and np.all((p >= 0) & (p <= 1)) and p.std() > 0.01
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.pkl")) and not list((tmp_path / "m").rglob("*.pickle"))
    reloaded = TabularModel.load(tmp_path / "m")
    np.testing.assert_allclose(reloaded.predict_proba(Xv), p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_fit(model_type, tiny).predict_proba(Xv), p, rtol=0, atol=1e-12)  # same seed
    # columns in another order, and extra columns, change nothing
    shuffled = Xv[list(reversed(Xv.columns))].assign(first_name="Ann")
    np.testing.assert_allclose(model.predict_proba(shuffled), p, rtol=0, atol=1e-12)
    # the serving path (feature dicts, None for missing, an unseen category), fresh after a reload
    records = Xv.astype(object).where(Xv.notna(), None).to_dict("records")
    records[0] = {**records[0], **{c: "never-seen" for c in model.categorical}}
    expected = model.predict_proba(pd.DataFrame.from_records(records, columns=model.features))
    np.testing.assert_allclose(
        TabularModel.load(tmp_path / "m").predict_records(records), expected, atol=1e-6
    )


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_mlflow_round_trip_returns_the_same_probabilities(
    model_type: str, tiny, tmp_path: Path, small_config: FlywheelConfig
) -> None:
    Xv = tiny[3]
    model = _fit(model_type, tiny)
    tracking.setup(small_config, Workdir.at(tmp_path / "wd"))
    with mlflow.start_run():
        uri = log_model(model, Xv)
    loaded = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(np.asarray(loaded.predict(Xv)), model.predict_proba(Xv), rtol=0, atol=1e-12)


def test_unknown_categories_and_missing_values_are_handled(tiny) -> None:
    Xv = tiny[3]
    model = _fit("lightgbm", tiny)
    odd = Xv.head(20).copy()
    odd["country"] = "Atlantis"
    odd["return_rate_90d"] = np.nan
    p = model.predict_proba(odd)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_missing_feature_column_is_named(tiny) -> None:
    Xv = tiny[3]
    model = _fit("logistic_regression", tiny)
    with pytest.raises(ValueError, match="lacks feature column"):
        model.predict_proba(Xv.drop(columns=["orders_30d"]))


def test_xgboost_early_stopping_watches_the_weighted_loss(tiny) -> None:
    """Regression: the validation loss XGBoost stopped on was unweighted while the trees minimized the
    class-balanced loss, so it rose from the first round and a bank model kept one tree (ROC-AUC 0.70
    instead of 0.75 on valid)."""
    from sklearn.metrics import log_loss

    model = _fit("xgboost", tiny)
    _, _, _, Xv, yv = tiny
    recorded = model.estimator_.evals_result()["validation_0"]["logloss"]
    rounds = len(recorded)
    p = model.estimator_.predict_proba(model._frame(Xv), iteration_range=(0, rounds))[:, 1]
    assert recorded[-1] == pytest.approx(log_loss(yv, p, sample_weight=model._weights(yv)), rel=1e-4)


def _three_classes(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose class (0, 1, 2) follows a latent score of two numeric columns and a category."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "debt": rng.lognormal(8, 1, rows),
            "delay": rng.integers(0, 60, rows).astype(float),
            "mix": rng.choice(["Good", "Standard", "Bad"], rows),
        }
    )
    X.loc[rng.random(rows) < 0.05, "debt"] = np.nan
    latent = (
        -0.4 * np.log1p(X["debt"].fillna(3000))
        - 0.05 * X["delay"]
        + X["mix"].map({"Good": 1.0, "Standard": 0.0, "Bad": -1.0})
    )
    latent = latent + rng.normal(0, 0.5, rows)
    y = np.digitize(latent, np.quantile(latent, [0.3, 0.8]))
    return X, y


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
@pytest.mark.parametrize("scale", ["none", "robust"])
def test_multiclass_contract(model_type: str, scale: str, tmp_path: Path) -> None:
    """Three classes behind the same contract: a probability per class summing to 1, better than the
    class shares, save/load identical with no pickle, the serving path equal to predict_proba."""
    X, y = _three_classes(1200, 0)
    Xv, yv = _three_classes(400, 1)
    model = make_model(model_type, list(X.columns), ["mix"], SMALL_PARAMS.get(model_type), 7, 3, scale)
    model.fit(X, y, Xv, yv)
    model.calibrator_ = calibration.fit("platt", yv, model.predict_proba(Xv))
    p = model.predict_proba(Xv)
    assert p.shape == (len(Xv), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p.argmax(axis=1) == yv).mean() > 0.6  # the majority class holds 50 %
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").rglob("*.pkl")) and not list((tmp_path / "m").rglob("*.pickle"))
    reloaded = TabularModel.load(tmp_path / "m")
    assert reloaded.n_classes == 3 and reloaded.scale == scale
    np.testing.assert_allclose(reloaded.predict_proba(Xv), p, rtol=0, atol=1e-12)
    records = Xv.astype(object).where(Xv.notna(), None).to_dict("records")
    np.testing.assert_allclose(reloaded.predict_records(records), p, atol=1e-6)


def test_robust_scaling_is_learned_on_the_training_rows_only() -> None:
    X, y = _three_classes(1000, 0)
    model = make_model("logistic_regression", list(X.columns), ["mix"], None, 7, 3, "robust").fit(X, y)
    center, spread = model.scaling_["delay"]
    low, high = np.nanquantile(X["delay"], [0.25, 0.75])
    assert center == pytest.approx(np.nanmedian(X["delay"])) and spread == pytest.approx(high - low)
    assert "mix" not in model.scaling_
    # and applied: what the estimator sees of a column is the scaled value
    np.testing.assert_allclose(model._frame(X)["delay"], (X["delay"] - center) / spread)


def test_labels_outside_the_classes_are_refused() -> None:
    X, y = _three_classes(300, 0)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        make_model("lightgbm", list(X.columns), ["mix"], {"n_estimators": 5}).fit(X, y)


def test_multiclass_mlflow_round_trip_returns_a_probability_per_class(
    tmp_path: Path, small_config: FlywheelConfig
) -> None:
    X, y = _three_classes(600, 0)
    model = make_model("catboost", list(X.columns), ["mix"], {"iterations": 30}, 7, 3, "robust").fit(X, y)
    tracking.setup(small_config, Workdir.at(tmp_path / "wd"))
    with mlflow.start_run():
        uri = log_model(model, X)
    got = np.asarray(mlflow.pyfunc.load_model(uri).predict(X.head(50)))
    assert got.shape == (50, 3)
    np.testing.assert_allclose(got, model.predict_proba(X.head(50)), rtol=0, atol=1e-12)
