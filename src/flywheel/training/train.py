"""The ``train`` and ``eval`` steps: tune, fit the candidate and the baseline, evaluate, log to MLflow.

Every run logs its parameters, validation and test metrics, plots, ``metrics.json``, the dataset it
read (``mlflow.data``), and the candidate as an MLflow pyfunc whose ``predict`` returns the
predicted probabilities: the exact object serving loads.
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
from flywheel.features.dataset import SPLITS
from flywheel.features.profile import PROFILE_ARTIFACT, build_profile
from flywheel.lock import locks_workdir
from flywheel.training import calibration, evaluation, tracking
from flywheel.training.models import MODEL_TYPES, TabularModel, make_model
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_FOLDER = "model"  # the Flywheel model files inside the logged MLflow model's artifacts
BASELINE_FOLDER = "baseline"  # the baseline model, in the training run's artifacts
EVAL_FOLDER, METRICS_FILE, PREDICTIONS_FILE = "eval", "metrics.json", "test_predictions.parquet"
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
class Evaluation:
    """The ``eval`` step's result: test metrics at the run's threshold, computed once, and where the
    test-set probabilities (what the registry's comparison reuses) were logged."""

    run_id: str
    threshold: float
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    metrics_uri: str
    predictions_uri: str


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    model_type: str
    params: dict[str, Any]
    threshold: float
    valid_metrics: dict[str, float]
    baseline_valid_metrics: dict[str, float]
    tuning_seconds: float
    dataset_path: Path
    trials: list[dict[str, Any]] = field(default_factory=list)
    evaluation: Evaluation | None = None

    @property
    def test_metrics(self) -> dict[str, float]:
        if self.evaluation is None:
            raise DataError(f"run {self.run_id} has not been evaluated; run the eval step")
        return self.evaluation.metrics

    @property
    def baseline_test_metrics(self) -> dict[str, float]:
        if self.evaluation is None:
            raise DataError(f"run {self.run_id} has not been evaluated; run the eval step")
        return self.evaluation.baseline_metrics


def load_dataset(workdir: Workdir, path: Path | None = None, splits: tuple[str, ...] = SPLITS) -> Dataset:
    """A dataset folder (default: the newest) with the given splits read."""
    folder = path or dataset_module.latest(workdir)
    meta_path = folder / "metadata.json"
    if not meta_path.exists():
        raise DataError(f"{folder} is not a dataset (no metadata.json); run `flywheel features dataset`")
    metadata = json.loads(meta_path.read_text())
    frames = {name: pq.read_table(folder / f"{name}.parquet").to_pandas() for name in splits}
    return Dataset(folder, metadata, frames)


def _score(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """The tuning objective, as larger-is-better."""
    values = evaluation.compute_metrics(y, p, 0.5)
    return -values["log_loss"] if metric == "log_loss" else values[metric]


def n_classes(config: FlywheelConfig) -> int:
    """How many classes the use case's label codes take: its named classes, else two."""
    return len(config.spec.classes) or 2


def new_model(config: FlywheelConfig, model_type: str, data: Dataset, params: dict[str, Any]) -> TabularModel:
    """An unfitted model of ``model_type`` for ``data``'s features and the use case's task."""
    training = config.training
    categorical = data.metadata["categorical_features"]
    return make_model(
        model_type, data.features, categorical, params, training.seed, n_classes(config), training.scale
    )


def tune(config: FlywheelConfig, data: Dataset) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Search parameters on the validation split; each trial is a nested MLflow run."""
    import mlflow

    training = config.training
    tuning = training.tuning
    model_type = training.model_type
    X, y = data.xy("train")
    Xv, yv = data.xy("valid")
    trials: list[dict[str, Any]] = []

    def evaluate(params: dict[str, Any]) -> float:
        cancel.check()
        merged = {**training.params, **params}
        with mlflow.start_run(run_name=f"trial-{len(trials)}", nested=True):
            model = new_model(config, model_type, data, merged).fit(X, y, Xv, yv)
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


def fit(
    config: FlywheelConfig, model_type: str, params: dict[str, Any], data: Dataset
) -> tuple[TabularModel, float, dict[str, float]]:
    """Fit on the train split; calibrate, choose the threshold and measure on the validation split
    (never test). A multiclass model predicts the most probable class: its threshold (0.5) is
    recorded, not used. The validation metrics include the uncalibrated Brier score and calibration
    error (``uncalibrated_brier``, ``uncalibrated_ece``)."""
    X, y = data.xy("train")
    Xv, yv = data.xy("valid")
    model = new_model(config, model_type, data, params).fit(X, y, Xv, yv)
    before = calibration.uncalibrated_figures(yv, model.predict_proba(Xv))
    if config.training.calibration != "none":
        model.calibrator_ = calibration.fit(config.training.calibration, yv, model.predict_proba(Xv))
    p_valid = model.predict_proba(Xv)
    threshold = (
        0.5 if model.multiclass else evaluation.choose_threshold(yv, p_valid, config.training.threshold)
    )
    return model, threshold, evaluation.compute_metrics(yv, p_valid, threshold, config.spec.classes) | before


def load_logged_model(folder: Path) -> TabularModel:
    """The Flywheel model inside a downloaded MLflow model folder (read into memory: the folder may go)."""
    # the one artifact folder holding a saved model (models logged by earlier releases named it otherwise)
    saved = next((folder / "artifacts").glob("*/spec.json"), None)
    return TabularModel.load(saved.parent if saved else folder / "artifacts" / MODEL_FOLDER)


def log_model(model: TabularModel, example: pd.DataFrame) -> str:
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


def check_trainable(data: Dataset) -> None:
    """Fail before any tuning when the dataset cannot give a model: an empty split or one class."""
    for split in SPLITS:
        _, y = data.xy(split)
        if len(y) == 0:
            raise DataError(
                f"dataset {data.path}: the {split} split is empty (no rows to train or evaluate on); "
                "build a longer history"
            )
        if len(np.unique(y)) < 2:  # no ROC-AUC to tune, gate or compare on
            raise DataError(f"dataset {data.path}: the {split} split holds one class only ({int(y[0])})")


def _log_inputs(config: FlywheelConfig, data: Dataset, pipeline_run_id: str | None) -> None:
    """The run's tags and its dataset splits as ``mlflow.data`` inputs."""
    import mlflow

    mlflow.set_tags(
        {
            **tracking.run_tags(config, data.metadata),
            "flywheel.step": "train",
            "flywheel.model_type": config.training.model_type,
            **({"flywheel.pipeline_run_id": pipeline_run_id} if pipeline_run_id else {}),
        }
    )
    for split, frame in data.splits.items():
        name = f"{data.metadata['dataset_id']}-{split}"
        source = str(data.path / f"{split}.parquet")
        dataset = mlflow.data.from_pandas(frame, source=source, targets=data.label, name=name)
        mlflow.log_input(dataset, context=split)


@locks_workdir("train")
def fit_run(
    config: FlywheelConfig,
    workdir: Workdir,
    dataset_path: Path | None = None,
    pipeline_run_id: str | None = None,
) -> TrainResult:
    """The ``train`` step: tune and fit the configured model type and the baseline on the train and
    validation splits; log both, the threshold and the reference profile to one MLflow run. The test
    split is left to :func:`evaluate`.

    What can fail cheaply is checked first (the splits, a write to the artifact store), so a run that
    cannot finish fails before the tuning."""
    import mlflow

    data = load_dataset(workdir, dataset_path)
    check_trainable(data)
    experiment_id = tracking.setup(config, workdir)
    training = config.training
    with mlflow.start_run(run_name=f"train-{training.model_type}", experiment_id=experiment_id) as run:
        mlflow.log_dict(data.metadata, "dataset.json")  # fails now, not after tuning, if unwritable
        _log_inputs(config, data, pipeline_run_id)
        params, trials, tuning_seconds = tune(config, data)
        cancel.check()
        model, threshold, valid_metrics = fit(config, training.model_type, params, data)
        baseline, baseline_threshold, baseline_valid = fit(config, training.baseline, {}, data)
        mlflow.log_params(
            {
                **{f"model.{k}": v for k, v in params.items()},
                "model_type": training.model_type,
                "baseline": training.baseline,
                "tuning.method": training.tuning.method,
                "tuning.trials": len(trials),
                "scale": training.scale,
                "calibration": training.calibration,
                "classes": ",".join(config.spec.classes) or "0,1",
                "threshold": threshold,
                "baseline_threshold": baseline_threshold,
                "dataset_id": data.metadata["dataset_id"],
            }
        )
        mlflow.log_metrics({f"valid_{k}": v for k, v in valid_metrics.items()})
        mlflow.log_metrics({f"baseline_valid_{k}": v for k, v in baseline_valid.items()})
        mlflow.log_metric("tuning_seconds", tuning_seconds)
        X, _ = data.xy("train")
        with tempfile.TemporaryDirectory() as tmp:
            baseline.save(Path(tmp) / BASELINE_FOLDER)
            mlflow.log_artifacts(str(Path(tmp) / BASELINE_FOLDER), BASELINE_FOLDER)
            # the reference profile drift monitoring compares against (fixed size, no training rows)
            profile_file = Path(tmp) / PROFILE_ARTIFACT
            profile = build_profile(X, model.categorical, model.predict_proba(X), config.spec.classes)
            profile_file.write_text(json.dumps(profile))
            mlflow.log_artifact(str(profile_file))
        cancel.check()  # a safe point: the run is complete but for its model
        model_uri = log_model(model, X)
    _logger.info(
        "run %s: valid roc_auc %.4f (baseline %.4f)",
        run.info.run_id,
        valid_metrics["roc_auc"],
        baseline_valid["roc_auc"],
    )
    return TrainResult(
        run.info.run_id,
        model_uri,
        training.model_type,
        params,
        threshold,
        valid_metrics,
        baseline_valid,
        tuning_seconds,
        data.path,
        trials,
    )


def evaluate(
    config: FlywheelConfig, workdir: Workdir, run_id: str, model_uri: str, threshold: float, test: Path
) -> Evaluation:
    """The ``eval`` step: the candidate's and the baseline's test-set probabilities, computed once,
    their metrics at the run's threshold, and the plots — all logged to the training run; the
    probabilities are logged too, for the registry's comparison with the champion."""
    import mlflow

    data = load_dataset(workdir, Path(test).parent, splits=("test",))
    tracking.setup(config, workdir)
    client = mlflow.MlflowClient()
    baseline_threshold = float(client.get_run(run_id).data.params.get("baseline_threshold", threshold))
    Xt, yt = data.xy("test")
    with tempfile.TemporaryDirectory() as tmp:
        model = load_logged_model(Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=f"{tmp}/m")))
        baseline = TabularModel.load(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=BASELINE_FOLDER, dst_path=f"{tmp}/b"
                )
            )
        )
        p, p_baseline = model.predict_proba(Xt), baseline.predict_proba(Xt)
        p_uncalibrated = model.predict_proba(Xt, calibrated=False)
        classes = config.spec.classes
        metrics = evaluation.compute_metrics(yt, p, threshold, classes) | calibration.uncalibrated_figures(
            yt, p_uncalibrated
        )
        baseline_metrics = evaluation.compute_metrics(yt, p_baseline, baseline_threshold, classes)
        logged = {
            **{f"test_{k}": v for k, v in metrics.items()},
            **{f"baseline_test_{k}": v for k, v in baseline_metrics.items()},
            "test_roc_auc_lift_over_baseline": metrics["roc_auc"] - baseline_metrics["roc_auc"],
        }
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in logged.items()])
        folder = Path(tmp) / "eval"
        plots = evaluation.plots(
            yt, p, threshold, model.feature_importance(), Path(tmp) / "plots", classes, p_uncalibrated
        )
        for path in plots:
            client.log_artifact(run_id, str(path), "plots")
        folder.mkdir()
        keys = data.splits["test"][[data.metadata["entity_column"], data.metadata["time_column"]]]
        predictions = keys.assign(
            label=yt,
            **evaluation.probability_columns(p, "probability"),
            **evaluation.probability_columns(p_baseline, "baseline_probability"),
        )
        predictions.to_parquet(folder / PREDICTIONS_FILE, index=False)
        summary = {
            "threshold": threshold,
            "test": metrics,
            "baseline_test": baseline_metrics,
            "confusion_matrix": evaluation.confusion(yt, p, threshold),
            "calibration": model.calibrator_.method if model.calibrator_ else "none",
            "reliability": {
                "calibrated": calibration.reliability(yt, p),
                "uncalibrated": calibration.reliability(yt, p_uncalibrated),
            },
            "classes": list(classes) or [0, 1],
            "dataset_id": data.metadata["dataset_id"],
        }
        (folder / METRICS_FILE).write_text(json.dumps(summary, indent=2))
        client.log_artifacts(run_id, str(folder), EVAL_FOLDER)
    return Evaluation(
        run_id,
        threshold,
        metrics,
        baseline_metrics,
        f"runs:/{run_id}/{EVAL_FOLDER}/{METRICS_FILE}",
        f"runs:/{run_id}/{EVAL_FOLDER}/{PREDICTIONS_FILE}",
    )


def train(
    config: FlywheelConfig,
    workdir: Workdir,
    dataset_path: Path | None = None,
    pipeline_run_id: str | None = None,
) -> TrainResult:
    """``train`` then ``eval`` on the same dataset: what ``flywheel train`` runs outside the pipeline."""
    result = fit_run(config, workdir, dataset_path, pipeline_run_id)
    result.evaluation = evaluate(
        config,
        workdir,
        result.run_id,
        result.model_uri,
        result.threshold,
        result.dataset_path / "test.parquet",
    )
    return result


def read_evaluation(uri: str) -> dict[str, Any]:
    """The ``eval`` step's metrics file (a ``runs:/`` URI or a path)."""
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(_download(uri, tmp, "the eval step's metrics").read_text())


def read_predictions(uri: str) -> pd.DataFrame:
    """The ``eval`` step's test-set probabilities (a ``runs:/`` URI or a path)."""
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(_download(uri, tmp, "the eval step's test predictions"))


def _download(uri: str, folder: str, what: str) -> Path:
    """An artifact by URI, or a clear error naming the input (a step's input may be mistyped)."""
    import mlflow

    try:
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=folder))
    except Exception as error:  # MLflow raises several types for a bad or missing URI
        raise DataError(f"cannot read {what} at {uri!r}: {error}") from None


def evaluate_model(
    config: FlywheelConfig,
    workdir: Workdir,
    model_uri: str,
    threshold: float = 0.5,
    dataset_path: Path | None = None,
) -> dict[str, float]:
    """Metrics of any logged or registered model on a test split (default: the latest dataset), as a
    run of its own: ``flywheel evaluate``."""
    import mlflow

    data = load_dataset(workdir, dataset_path)
    experiment_id = tracking.setup(config, workdir)
    X, y = data.xy("test")
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception as error:  # MLflow raises several types for a bad URI
        raise DataError(f"cannot load model {model_uri}: {error}") from None
    p = np.asarray(model.predict(X), dtype=float)
    metrics = evaluation.compute_metrics(y, p, threshold, config.spec.classes)
    with mlflow.start_run(run_name="evaluate", experiment_id=experiment_id):
        mlflow.set_tags(
            {
                **tracking.run_tags(config, data.metadata),
                "flywheel.step": "evaluate",
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
