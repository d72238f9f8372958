"""The ``train`` and ``eval`` steps: tune, fit the candidate and the baseline, evaluate, log to MLflow.

Every run logs its parameters, validation and test metrics, plots, ``metrics.json``, the dataset it
read (``mlflow.data``), and the candidate as an MLflow pyfunc whose ``predict`` returns churn
probabilities: the exact object serving loads.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from flywheel import cancel
from flywheel.config import FlywheelConfig
from flywheel.errors import DataError
from flywheel.features import dataset as dataset_module
from flywheel.features.profile import PROFILE_ARTIFACT, build_profile
from flywheel.lock import locks_workdir
from flywheel.training import evaluation, tracking
from flywheel.training.models import MODEL_TYPES, ChurnModel, make_model
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_FOLDER = "churn_model"  # the Flywheel model files inside the logged MLflow model's artifacts
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Dataset:
    path: Path
    metadata: dict[str, Any]
    splits: dict[str, pd.DataFrame]

    @property
    def label(self) -> str:
        return self.metadata["label_column"]

    @property
    def features(self) -> list[str]:
        return self.metadata["features"]

    def xy(self, split: str) -> tuple[pd.DataFrame, np.ndarray]:
        frame = self.splits[split]
        return frame[self.features], frame[self.label].to_numpy(dtype=int)


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    model_type: str
    params: dict[str, Any]
    threshold: float
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    baseline_test_metrics: dict[str, float]
    tuning_seconds: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def load_dataset(workdir: Workdir, path: Path | None = None) -> Dataset:
    folder = path or dataset_module.latest(workdir)
    meta_path = folder / "metadata.json"
    if not meta_path.exists():
        raise DataError(f"{folder} is not a dataset (no metadata.json); run `flywheel features dataset`")
    metadata = json.loads(meta_path.read_text())
    splits = {name: pq.read_table(folder / f"{name}.parquet").to_pandas() for name in dataset_module.SPLITS}
    return Dataset(folder, metadata, splits)


def _score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The tuning objective, as larger-is-better."""
    values = evaluation.compute_metrics(y, p, 0.5)
    return -values["log_loss"] if metric == "log_loss" else values[metric]


def tune(config: FlywheelConfig, data: Dataset) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Search parameters on the validation split; each trial is a nested MLflow run."""
    import mlflow

    training = config.training
    tuning = training.tuning
    model_type = training.model_type
    categorical = data.metadata["categorical_features"]
    X, y = data.xy("train")
    Xv, yv = data.xy("valid")
    trials: list[dict[str, Any]] = []

    def evaluate(params: dict[str, Any]) -> float:
        cancel.check()
        merged = {**training.params, **params}
        with mlflow.start_run(run_name=f"trial-{len(trials)}", nested=True):
            model = make_model(model_type, data.features, categorical, merged, training.seed).fit(
                X, y, Xv, yv
            )
            score = _score(tuning.metric, yv, model.predict_proba(Xv))
            mlflow.log_params(merged)
            mlflow.log_metric(f"valid_{tuning.metric}", score if tuning.metric != "log_loss" else -score)
        trials.append({"params": merged, "score": score})
        return score

    started = time.perf_counter()
    if tuning.method == "grid":
        import itertools

        keys = list(tuning.grid)
        for values in itertools.product(*(tuning.grid[k] for k in keys)):
            evaluate(dict(zip(keys, values, strict=True)))
    elif tuning.method == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=training.seed)
        )
        space = MODEL_TYPES[model_type].search_space
        study.optimize(lambda trial: evaluate(space(trial)), n_trials=tuning.trials, timeout=tuning.timeout_s)
    seconds = time.perf_counter() - started
    best = max(trials, key=lambda t: t["score"])["params"] if trials else dict(training.params)
    return best, trials, seconds


def fit_and_evaluate(
    model_type: str, params: dict[str, Any], data: Dataset, seed: int, threshold_setting: float | str
) -> tuple[ChurnModel, float, dict, dict]:
    X, y = data.xy("train")
    Xv, yv = data.xy("valid")
    Xt, yt = data.xy("test")
    model = make_model(model_type, data.features, data.metadata["categorical_features"], params, seed)
    model.fit(X, y, Xv, yv)
    p_valid = model.predict_proba(Xv)
    threshold = evaluation.choose_threshold(yv, p_valid, threshold_setting)
    return (
        model,
        threshold,
        evaluation.compute_metrics(yv, p_valid, threshold),
        evaluation.compute_metrics(yt, model.predict_proba(Xt), threshold),
    )


def load_logged_model(folder: Path) -> ChurnModel:
    """The Flywheel model inside a downloaded MLflow model folder (read into memory: the folder may go)."""
    return ChurnModel.load(folder / "artifacts" / MODEL_FOLDER)


def log_model(model: ChurnModel, example: pd.DataFrame) -> str:
    """Log ``model`` as an MLflow pyfunc (code + safe model files); returns its model URI."""
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / MODEL_FOLDER
        model.save(folder)
        example = example.head(5)
        signature = infer_signature(example, model.predict_proba(example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"model": str(folder)},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(model.model_type),
        )
    return info.model_uri


def _requirements(model_type: str) -> list[str]:
    from importlib.metadata import version

    packages = ["mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml", "scikit-learn", "skops"]
    packages += {"lightgbm": ["lightgbm"], "xgboost": ["xgboost"], "catboost": ["catboost"]}.get(
        model_type, []
    )
    return [f"{name}=={version(name)}" for name in packages]


@locks_workdir("train")
def train(
    config: FlywheelConfig,
    workdir: Workdir,
    dataset_path: Path | None = None,
    pipeline_run_id: str | None = None,
) -> TrainResult:
    """Tune and train the configured model type and the baseline; log everything to one MLflow run."""
    import mlflow

    data = load_dataset(workdir, dataset_path)
    tracking.setup(config, workdir)
    training = config.training
    with mlflow.start_run(run_name=f"train-{training.model_type}") as run:
        mlflow.set_tags(
            {
                **tracking.run_tags(config, data.metadata),
                "flywheel.step": "train",
                "flywheel.model_type": training.model_type,
                **({"flywheel.pipeline_run_id": pipeline_run_id} if pipeline_run_id else {}),
            }
        )
        for split, frame in data.splits.items():
            source = str(data.path / f"{split}.parquet")
            mlflow.log_input(
                mlflow.data.from_pandas(
                    frame, source=source, targets=data.label, name=f"{data.metadata['dataset_id']}-{split}"
                ),
                context=split,
            )
        params, trials, tuning_seconds = tune(config, data)
        cancel.check()
        model, threshold, valid_metrics, test_metrics = fit_and_evaluate(
            training.model_type, params, data, training.seed, training.threshold
        )
        _, _, _, baseline_metrics = fit_and_evaluate(
            training.baseline, {}, data, training.seed, training.threshold
        )
        mlflow.log_params(
            {
                **{f"model.{k}": v for k, v in params.items()},
                "model_type": training.model_type,
                "baseline": training.baseline,
                "tuning.method": training.tuning.method,
                "tuning.trials": len(trials),
                "threshold": threshold,
                "dataset_id": data.metadata["dataset_id"],
            }
        )
        mlflow.log_metrics({f"valid_{k}": v for k, v in valid_metrics.items()})
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline_metrics.items()})
        mlflow.log_metric(
            "test_roc_auc_lift_over_baseline", test_metrics["roc_auc"] - baseline_metrics["roc_auc"]
        )
        mlflow.log_metric("tuning_seconds", tuning_seconds)
        Xt, yt = data.xy("test")
        with tempfile.TemporaryDirectory() as tmp:
            for path in evaluation.plots(
                yt, model.predict_proba(Xt), threshold, model.feature_importance(), Path(tmp)
            ):
                mlflow.log_artifact(str(path), artifact_path="plots")
            metrics_file = Path(tmp) / "metrics.json"
            metrics_file.write_text(
                json.dumps(
                    {
                        "valid": valid_metrics,
                        "test": test_metrics,
                        "baseline_test": baseline_metrics,
                        "threshold": threshold,
                        "params": params,
                    },
                    indent=2,
                    default=str,
                )
            )
            mlflow.log_artifact(str(metrics_file))
            # the reference profile drift monitoring compares against (fixed size, no training rows)
            X, _ = data.xy("train")
            profile = build_profile(X, model.categorical, model.predict_proba(X))
            profile_file = Path(tmp) / PROFILE_ARTIFACT
            profile_file.write_text(json.dumps(profile))
            mlflow.log_artifact(str(profile_file))
        model_uri = log_model(model, Xt)
    _logger.info(
        "run %s: test roc_auc %.4f (baseline %.4f)",
        run.info.run_id,
        test_metrics["roc_auc"],
        baseline_metrics["roc_auc"],
    )
    return TrainResult(
        run.info.run_id,
        model_uri,
        training.model_type,
        params,
        threshold,
        valid_metrics,
        test_metrics,
        baseline_metrics,
        tuning_seconds,
        trials,
    )


def evaluate_model(
    config: FlywheelConfig,
    workdir: Workdir,
    model_uri: str,
    threshold: float = 0.5,
    dataset_path: Path | None = None,
) -> dict[str, float]:
    """Metrics of a logged or registered model on a test split (default: the latest dataset), as a run."""
    import mlflow

    data = load_dataset(workdir, dataset_path)
    tracking.setup(config, workdir)
    X, y = data.xy("test")
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as error:  # MLflow raises several types for a bad URI
        raise DataError(f"cannot load model {model_uri}: {error}") from None
    metrics = evaluation.compute_metrics(y, np.asarray(model.predict(X), dtype=float), threshold)
    with mlflow.start_run(run_name="evaluate"):
        mlflow.set_tags(
            {
                **tracking.run_tags(config, data.metadata),
                "flywheel.step": "eval",
                "flywheel.model_uri": model_uri,
            }
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    return metrics


def best_runs(
    config: FlywheelConfig, workdir: Workdir, metric: str = "test_roc_auc", limit: int = 10
) -> list[dict]:
    """Training runs of the experiment, best first by ``metric``."""
    import mlflow

    tracking.setup(config, workdir)
    runs = mlflow.search_runs(
        experiment_names=[config.tracking.experiment],
        filter_string="tags.`flywheel.step` = 'train'",
        order_by=[f"metrics.{metric} DESC"],
        max_results=limit,
        output_format="list",
    )
    return [
        {
            "run_id": r.info.run_id,
            "start": datetime.fromtimestamp(r.info.start_time / 1000, UTC),
            "model_type": r.data.params.get("model_type"),
            metric: r.data.metrics.get(metric),
            "baseline": r.data.metrics.get(metric.replace("test_", "baseline_test_")),
            "dataset_id": r.data.params.get("dataset_id"),
        }
        for r in runs
    ]
