"""Behaviour of the default model on generated data: directional, invariance, minimum functionality."""

from __future__ import annotations

import mlflow
import numpy as np

from flywheel.config import default_config
from flywheel.training import tracking
from flywheel.training.train import load_dataset
from flywheel.workdir import Workdir


def test_beats_the_baseline_on_the_test_split(trained) -> None:
    _, result = trained
    assert result.test_metrics["roc_auc"] > result.baseline_test_metrics["roc_auc"]
    assert 0.75 < result.test_metrics["roc_auc"] < 0.99  # learnable, and not trivially so


def _logged_model(workdir: Workdir, uri: str):
    """The logged model, read from the workdir's own store (never whichever one MLflow last pointed at)."""
    tracking.setup(default_config(), workdir)
    return mlflow.pyfunc.load_model(uri)


def test_more_recent_activity_lowers_churn_probability(trained) -> None:
    workdir, result = trained
    model = _logged_model(workdir, result.model_uri)
    X, _ = load_dataset(workdir).xy("test")
    recent = X.head(300).copy()
    recent["days_since_last_order"] = 2.0
    dormant = recent.copy()
    dormant["days_since_last_order"] = 150.0
    dormant["orders_30d"] = 0
    dormant["revenue_30d"] = 0.0
    recent["orders_30d"] = recent["orders_30d"].clip(lower=1)
    p_recent, p_dormant = model.predict(recent), model.predict(dormant)
    assert np.mean(p_dormant > p_recent) > 0.9
    assert p_dormant.mean() - p_recent.mean() > 0.2


def test_fields_the_model_does_not_use_change_nothing(trained) -> None:
    workdir, result = trained
    model = _logged_model(workdir, result.model_uri)
    X, _ = load_dataset(workdir).xy("test")
    rows = X.head(200)
    with_names = rows.assign(first_name="Zed", last_name="Quux", email="zq@example.com")
    np.testing.assert_array_equal(model.predict(with_names), model.predict(rows))
