"""Batch scoring: every entity's latest offline snapshot, scored by the champion in one pass."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.data.engine import open_engine
from flywheel.errors import FlywheelError
from flywheel.features.online import latest_sql
from flywheel.features.profile import predicted_classes
from flywheel.features.snapshots import TIMESTAMP_COLUMN, require_snapshots
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
    """Every entity's latest snapshot scored by the champion, on the configured engine (on Spark in
    ``mapInPandas``: the model travels to the executors, the rows never come to the driver before
    they are scored)."""
    started = time.perf_counter()
    version = registry.champion_version(config, workdir)
    if version is None:
        raise FlywheelError(f"no {config.registry.model_name}@champion; run `flywheel pipeline run` first")
    model = load_version(config, workdir, version).model
    spec = config.spec
    key = spec.snapshot.entity.join_key
    engine = open_engine(config, workdir)
    sql = latest_sql(spec, workdir, engine)
    snapshot_schema = pq.read_schema(require_snapshots(workdir)[0])
    missing = [name for name in model.features if name not in snapshot_schema.names]
    if missing:
        raise FlywheelError(
            f"batch scoring scores each entity's latest {spec.snapshot.name} snapshot, and v{version} "
            f"also needs {', '.join(missing)} (request or context features, which a snapshot lacks)"
        )
    fields = [snapshot_schema.field(key), snapshot_schema.field(TIMESTAMP_COLUMN)]
    if spec.classes:  # a column per class, and the most probable class
        fields += [pa.field(f"{spec.api.score_field}_{name}", pa.float64()) for name in spec.classes]
        fields.append(pa.field(PREDICTED_CLASS, pa.string()))
    else:
        fields.append(pa.field(spec.api.score_field, pa.float64()))
    fields.append(pa.field("model_version", pa.string()))
    schema = pa.schema(fields)

    classes, score_field = spec.classes, spec.api.score_field  # what the executors need, not the spec

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        probabilities = model.predict_proba(frame[model.features])
        scores = {key: frame[key], TIMESTAMP_COLUMN: frame[TIMESTAMP_COLUMN]}
        if classes:
            for k, name in enumerate(classes):
                scores[f"{score_field}_{name}"] = probabilities[:, k]
            scores[PREDICTED_CLASS] = predicted_classes(probabilities, classes).to_numpy()
        else:
            scores[score_field] = probabilities
        return pd.DataFrame({**scores, "model_version": version})

    result = engine.map_batches(sql, score, schema).sort_by(key)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(result, out)
    return BatchResult(result.num_rows, version, time.perf_counter() - started)
