"""MLflow tracking: where runs and models go, and the common tags of every run."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from pathlib import Path

from flywheel.config import FlywheelConfig, config_hash
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


def tracking_uri(config: FlywheelConfig, workdir: Workdir) -> str:
    return config.tracking.uri or f"sqlite:///{workdir.mlflow_db}"


def setup(config: FlywheelConfig, workdir: Workdir) -> str:
    """Point MLflow's tracking and registry at the configured store; returns the experiment id."""
    import mlflow

    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    workdir.root.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(config, workdir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment_id = ensure_experiment(mlflow.MlflowClient(), config, workdir, config.tracking.experiment)
    mlflow.set_experiment(experiment_id=experiment_id)  # runs go here, never to ./mlruns
    return experiment_id


def ensure_experiment(client, config: FlywheelConfig, workdir: Workdir, name: str) -> str:
    """The id of experiment ``name``, created (artifacts inside the workdir by default) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        from mlflow.exceptions import MlflowException

        location = workdir.artifacts.as_uri() if config.tracking.uri is None else None
        with contextlib.suppress(MlflowException):  # another process may have created it first
            client.create_experiment(name, artifact_location=location)
        experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_tags(config: FlywheelConfig, dataset: dict) -> dict[str, str]:
    tags = {
        "flywheel.config_hash": config_hash(config),
        "flywheel.dataset_id": dataset["dataset_id"],
        "flywheel.lake_batches": ",".join(dataset["lake_batches"]),
        "flywheel.sql_hash": dataset["sql_hash"],
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
