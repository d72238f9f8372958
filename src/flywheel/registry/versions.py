"""A registered version, loaded from its MLflow artifacts: what the service serves (the version
behind ``champion``), what drift monitoring scores with, and what the promotion policy compares.

The service scores with the model's own fast path (``predict_records``), which is tested to give
the same probabilities as the logged MLflow pyfunc.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.config import FlywheelConfig
from flywheel.training import tracking
from flywheel.training.models import TabularModel
from flywheel.training.train import load_logged_model
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: TabularModel
    loaded_at: datetime

    @property
    def features(self) -> list[str]:
        return self.model.features

    def predict(self, records: list[dict[str, Any]]) -> np.ndarray:
        return self.model.predict_records(records)


def load_version(config: FlywheelConfig, workdir: Workdir, version: str) -> LoadedModel:
    """Download a registered version's artifacts, load it, and check it with a smoke prediction.

    Each load downloads into a folder of its own and reads the model into memory, so concurrent
    loads (the service's reloader, a retrain, a second retrain) never share a half-written folder."""
    import mlflow

    tracking.setup(config, workdir)
    workdir.model_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"v{version}-", dir=workdir.model_cache) as tmp:
        folder = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{config.registry.model_name}/{version}", dst_path=tmp
            )
        )
        model = load_logged_model(folder)
    probe = model.predict_records([{}])  # all features missing: must still give a probability
    if len(probe) != 1 or not np.all(np.isfinite(probe)):
        raise ValueError(f"version {version} failed its smoke prediction: {probe}")
    return LoadedModel(version, model, datetime.now(UTC))
