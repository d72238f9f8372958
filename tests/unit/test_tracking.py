"""``tracking.setup`` points MLflow at the workdir's store once per process and store, not per call."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from flywheel.config import default_config
from flywheel.training import tracking
from flywheel.workdir import Workdir


def test_setup_does_its_work_once_per_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, workdir = default_config(), Workdir.at(tmp_path / "wd")
    calls = []
    real = tracking.ensure_experiment
    monkeypatch.setattr(tracking, "ensure_experiment", lambda *args: calls.append(args) or real(*args))
    first = tracking.setup(config, workdir)
    assert tracking.setup(config, workdir) == first and len(calls) == 1
    uri = tracking.tracking_uri(config, workdir)
    assert mlflow.get_tracking_uri() == uri == mlflow.get_registry_uri()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # someone moved MLflow away
    assert tracking.setup(config, workdir) == first and len(calls) == 2
    assert mlflow.get_tracking_uri() == uri
