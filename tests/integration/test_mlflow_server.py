"""Tracking and the registry on a real MLflow tracking server, chosen by config."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.registry import registry
from flywheel.training import train
from flywheel.workdir import Workdir
from tests.servers import mlflow_server


def test_train_register_promote_on_a_tracking_server(
    featured_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(featured_workdir.root, workdir.root)
    with mlflow_server(tmp_path) as uri:
        config = apply_overrides(training_config, {"tracking.uri": uri, "training.tuning.method": "none"})
        result = train.train(config, workdir)
        registration = registry.register(config, workdir, result.run_id, result.model_uri)
        assert registration.gate_passed
        assert registry.promote(config, workdir).promoted
        champion = mlflow.pyfunc.load_model(f"models:/{config.registry.model_name}@champion")
        X, _ = train.load_dataset(workdir).xy("test")
        assert champion.predict(X.head(5)).shape == (5,)
        assert not workdir.mlflow_db.exists()  # nothing went to the embedded store
        assert any((tmp_path / "server-artifacts").rglob("spec.json"))
