"""``flywheel monitor drift``: the champion's reference profile against current data.

Current data is a feature snapshot date from the offline store (default: the newest), scored by the
champion for prediction drift, or the served traffic recorded in the prediction log over a window.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.features import dataset, labels, snapshots
from flywheel.features.profile import PROFILE_ARTIFACT, predicted_classes
from flywheel.monitoring import html, logrows
from flywheel.monitoring.alerts import alert
from flywheel.monitoring.drift import DriftReport, compare
from flywheel.registry import registry
from flywheel.registry.versions import load_version
from flywheel.serving.predlog import read_log
from flywheel.training.train import load_dataset
from flywheel.workdir import Workdir


def champion_profile(
    config: FlywheelConfig, workdir: Workdir, version: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The reference profile of the champion (``version``, when the caller has looked it up)."""
    import mlflow

    client = registry.mlflow_client(config, workdir)
    version = version or registry.alias_version(client, config.registry.model_name, registry.CHAMPION)
    if version is None:
        raise FlywheelError(
            f"no {config.registry.model_name}@champion to compare against; run the pipeline first"
        )
    run = registry.version_run(client, config.registry.model_name, version)
    workdir.model_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"profile-v{version}-", dir=workdir.model_cache) as tmp:
        try:  # a folder of its own: a concurrent reader never sees a half-downloaded profile
            path = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=PROFILE_ARTIFACT, dst_path=tmp
            )
        except Exception as error:  # MLflow raises several types for a missing artifact
            raise FlywheelError(
                f"champion v{version} has no reference profile ({error}); retrain it"
            ) from None
        return version, json.loads(Path(path).read_text())


def snapshot_frame(
    config: FlywheelConfig, workdir: Workdir, day: str | None = None
) -> tuple[str, pd.DataFrame]:
    """The newest data the model would score: the snapshot of ``day`` (default the newest) for labels
    on the grid; for event labels, the label rows (e.g. contacts) of the ``monitoring.window_days``
    up to ``day`` with the features the training set joins."""
    if config.labels.cadence_days is None:
        return _event_frame(config, workdir, day)
    manifest = snapshots.read_manifest(workdir)
    if not manifest or not manifest["dates"]:
        raise FlywheelError("no feature snapshots; run `flywheel features build` first")
    day = day or max(manifest["dates"])
    if day not in manifest["dates"]:
        raise FlywheelError(
            f"no snapshot on {day}; built dates run {min(manifest['dates'])} … {max(manifest['dates'])}"
        )
    return day, pq.read_table(snapshots.table_dir(workdir) / manifest["dates"][day]["file"]).to_pandas()


def _event_frame(config: FlywheelConfig, workdir: Workdir, day: str | None) -> tuple[str, pd.DataFrame]:
    rows = labels.current(config, workdir).drop_columns([config.labels.label_column])
    when = rows.column(labels.TIMESTAMP_COLUMN)
    if rows.num_rows == 0:
        raise FlywheelError("no label rows; run `flywheel features build` first")
    last = (
        pc.max(when).as_py()
        if day is None
        else datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    )
    first = last - timedelta(days=config.monitoring.window_days)
    rows = rows.filter(
        pc.and_(
            pc.greater(when, pa.scalar(first, when.type)), pc.less_equal(when, pa.scalar(last, when.type))
        )
    )
    if rows.num_rows == 0:
        raise FlywheelError(f"no label rows in ({first:%Y-%m-%d}, {last:%Y-%m-%d}]")
    return f"{last:%Y-%m-%d}", dataset.with_features(config, workdir, rows).to_pandas()


def log_frame(workdir: Workdir, since: datetime, until: datetime) -> tuple[pd.DataFrame, int]:
    """The features and probabilities logged in ``[since, until)``, and how many bad rows were
    skipped (see :mod:`flywheel.monitoring.logrows`)."""
    rows = read_log(workdir.predictions, since, until, ("features", "score", "predicted_class"))
    frame, skipped = logrows.features(rows)
    if frame.empty:
        bad = f" ({sum(skipped.values())} unreadable rows skipped)" if skipped else ""
        raise FlywheelError(
            f"the prediction log has no predictions from {since.isoformat()} to {until.isoformat()}{bad}"
        )
    return frame, sum(skipped.values())


def evidently_export(
    config: FlywheelConfig, workdir: Workdir, version: str, profile: dict[str, Any], current: pd.DataFrame
) -> Path:
    """The same comparison as an Evidently 0.7 ``DataDriftPreset`` report (HTML), for users who want
    one. Evidently needs rows, so this reads the champion's training split from its dataset."""
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError:
        raise FlywheelError(
            "--evidently needs Evidently ≥ 0.7: pip install -e '.[bench]' (or pip install evidently)"
        ) from None
    client = registry.mlflow_client(config, workdir)
    run = registry.version_run(client, config.registry.model_name, version)
    folder = workdir.datasets / run.data.tags.get("flywheel.dataset_id", "?")
    if not (folder / "metadata.json").exists():
        raise FlywheelError(f"champion v{version}'s training set {folder} is gone; Evidently needs its rows")
    columns = [c for c in profile["columns"] if c in current.columns]
    categorical = [c for c in columns if profile["columns"][c]["kind"] == "categorical"]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical], categorical_columns=categorical
    )
    reference = load_dataset(workdir, folder).splits["train"][columns]
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    path = workdir.reports / f"evidently-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.html"
    snapshot.save_html(str(path))
    return path


def drift(
    config: FlywheelConfig,
    workdir: Workdir,
    source: str = "snapshot",
    day: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    evidently: bool = False,
    champion: str | None = None,
) -> tuple[DriftReport, dict[str, Any], Path]:
    """Compare current data with the champion's reference profile; write the JSON and HTML reports.

    ``source="log"`` takes the served traffic answered in ``[since, until)`` (default: the last
    ``monitoring.window_days``); ``"snapshot"`` takes the snapshot of ``day`` (default: the newest).
    """
    version, profile = champion_profile(config, workdir, champion)
    if source == "log":
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=config.monitoring.window_days)
        frame, skipped_rows = log_frame(workdir, since, until)
        scores, classes = frame.pop("score"), frame.pop("predicted_class")
        # multiclass: prediction drift is drift of the predicted class's distribution
        predictions = (classes if config.spec.classes else scores).to_numpy()
        label = f"prediction log {since:%Y-%m-%d %H:%M} … {until:%Y-%m-%d %H:%M} UTC"
        extra: dict[str, Any] = {"skipped_rows": skipped_rows}
    else:
        day, frame = snapshot_frame(config, workdir, day)
        model = load_version(config, workdir, version)
        probabilities = model.model.predict_proba(frame[model.features])
        predictions = (
            predicted_classes(probabilities, config.spec.classes).to_numpy()
            if model.model.multiclass
            else probabilities
        )
        label = f"snapshot {day}"
        extra = {}
    report = compare(
        profile,
        frame[[c for c in profile["columns"] if c in frame.columns]],
        np.asarray(predictions),
        share_threshold=config.monitoring.drift_share,
        tests=config.monitoring.tests,
        prediction_name=config.spec.api.score_field,
    )
    meta = {
        "champion_version": version,
        "current": label,
        "created_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    workdir.reports.mkdir(parents=True, exist_ok=True)
    if evidently:
        meta["evidently_report"] = str(evidently_export(config, workdir, version, profile, frame))
    path = workdir.reports / f"drift-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json"
    path.write_text(json.dumps({**meta, **report.to_dict()}, indent=2))
    path.with_suffix(".html").write_text(html.render(report, meta))
    if report.dataset_drift:
        drifted = [c.column for c in report.columns if c.drifted]
        alert(
            config,
            workdir,
            "drift",
            f"dataset drift in {label} vs champion v{version}: {len(drifted)} of {len(report.columns)} "
            f"columns ({', '.join(drifted[:8])}); report {path.with_suffix('.html')}",
            report=str(path),
            champion=version,
        )
    return report, meta, path
