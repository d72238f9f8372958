"""Batch scoring: every entity's latest offline snapshot, scored by the champion in one pass."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.features.online import latest_snapshots
from flywheel.features.profile import predicted_classes
from flywheel.registry import registry
from flywheel.registry.versions import load_version
from flywheel.serving.schemas import PREDICTED_CLASS
from flywheel.workdir import Workdir


@dataclass(frozen=True)
class BatchResult:
    rows: int
    version: str
    seconds: float


def score_latest(config: FlywheelConfig, workdir: Workdir, out: Path) -> BatchResult:
    started = time.perf_counter()
    version = registry.champion_version(config, workdir)
    if version is None:
        raise FlywheelError(f"no {config.registry.model_name}@champion; run `flywheel pipeline run` first")
    model = load_version(config, workdir, version)
    spec = config.spec
    snapshots = latest_snapshots(spec, workdir)
    frame = snapshots.select(model.features).to_pandas()
    probabilities = model.model.predict_proba(frame)
    if spec.classes:  # a column per class, and the most probable class
        scores = {
            f"{spec.api.score_field}_{name}": probabilities[:, k] for k, name in enumerate(spec.classes)
        }
        scores[PREDICTED_CLASS] = predicted_classes(probabilities, spec.classes).to_numpy()
    else:
        scores = {spec.api.score_field: probabilities}
    result = pa.table(
        {
            spec.snapshot.entity.join_key: snapshots.column(spec.snapshot.entity.join_key),
            "feature_timestamp": snapshots.column("feature_timestamp"),
            **{name: pa.array(values) for name, values in scores.items()},
            "model_version": pa.array([version] * snapshots.num_rows),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(result, out)
    return BatchResult(result.num_rows, version, time.perf_counter() - started)
