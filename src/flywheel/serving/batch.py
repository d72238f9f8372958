"""Batch scoring by the champion, on the configured engine: every entity's latest offline snapshot,
or given rows (entity keys, a moment, request features) joined point-in-time to the features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.data.engine import Engine, open_engine
from flywheel.errors import DataError, FlywheelError
from flywheel.features import labels as labels_module
from flywheel.features.dataset import with_features
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
    version, model = _champion(config, workdir)
    spec = config.spec
    key = spec.snapshot.entity.join_key
    engine = open_engine(config, workdir)
    sql = latest_sql(spec, workdir, engine)
    snapshot_schema = pq.read_schema(require_snapshots(workdir)[0])
    missing = [name for name in model.features if name not in snapshot_schema.names]
    if missing:
        raise FlywheelError(
            f"batch scoring scores each entity's latest {spec.snapshot.name} snapshot, and v{version} "
            f"also needs {', '.join(missing)} (request or context features, which a snapshot lacks): "
            "score rows that carry them with --rows"
        )
    keys = [snapshot_schema.field(key), snapshot_schema.field(TIMESTAMP_COLUMN)]
    result = _score(config, engine, sql, model, version, keys).sort_by(key)
    return _write(result, out, version, started)


def score_rows(config: FlywheelConfig, workdir: Workdir, rows: pa.Table, out: Path) -> BatchResult:
    """``rows`` — the use case's entity keys, ``as_of`` (the moment to score at) and its request
    features — each joined point-in-time to the features as of its moment, exactly as the training
    set is, and scored by the champion; the join and the scoring run on the configured engine."""
    started = time.perf_counter()
    version, model = _champion(config, workdir)
    spec = config.spec
    keys = list(dict.fromkeys([spec.entity.join_key, spec.snapshot.entity.join_key]))
    request = [name for name in spec.labels.request_features if name in model.features]
    missing = [name for name in [*keys, AS_OF, *request] if name not in rows.column_names]
    if missing:
        raise DataError(
            f"the rows to score lack {', '.join(missing)}; they need {', '.join([*keys, AS_OF])} and "
            f"v{version}'s request features ({', '.join(request) or 'none'})"
        )
    if rows.num_rows == 0:
        raise DataError("the rows to score are empty")
    try:
        moments = rows.column(AS_OF).cast(pa.timestamp("us", "UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"the rows' {AS_OF} must be timestamps (e.g. 2024-05-01T00:00:00Z), not "
            f"{rows.schema.field(AS_OF).type}: {exc}"
        ) from exc
    rows = rows.select([*keys, *request]).add_column(len(keys), labels_module.TIMESTAMP_COLUMN, moments)
    engine = open_engine(config, workdir)
    joined = with_features(config, workdir, rows, model.features, engine)
    time_column = labels_module.TIMESTAMP_COLUMN
    engine.register_arrow(
        "scoring_rows", joined.rename_columns([AS_OF if n == time_column else n for n in joined.column_names])
    )
    fields = [joined.schema.field(name) for name in keys] + [pa.field(AS_OF, pa.timestamp("us", "UTC"))]
    result = _score(config, engine, "SELECT * FROM scoring_rows", model, version, fields)
    order = [(name, "ascending") for name in (AS_OF, *keys)]
    return _write(result.sort_by(order), out, version, started)


AS_OF = "as_of"


def read_rows(path: Path) -> pa.Table:
    """Rows to score from a Parquet or CSV file (``as_of`` read as a UTC moment)."""
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet or CSV file of rows to score ({exc})") from exc


def _champion(config: FlywheelConfig, workdir: Workdir) -> tuple[str, Any]:
    version = registry.champion_version(config, workdir)
    if version is None:
        raise FlywheelError(f"no {config.registry.model_name}@champion; run `flywheel pipeline run` first")
    return version, load_version(config, workdir, version).model


def _score(
    config: FlywheelConfig, engine: Engine, sql: str, model: Any, version: str, keys: list[pa.Field]
) -> pa.Table:
    """The rows of ``sql`` scored by ``model`` in batches on ``engine``: the ``keys`` columns, the
    score (multiclass: one per class and the most probable class) and the version."""
    spec = config.spec
    fields = list(keys)
    if spec.classes:
        fields += [pa.field(f"{spec.api.score_field}_{name}", pa.float64()) for name in spec.classes]
        fields.append(pa.field(PREDICTED_CLASS, pa.string()))
    else:
        fields.append(pa.field(spec.api.score_field, pa.float64()))
    fields.append(pa.field("model_version", pa.string()))
    names = [field.name for field in keys]
    classes, score_field = spec.classes, spec.api.score_field  # what the executors need, not the spec

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        probabilities = model.predict_proba(frame[model.features])
        scores = {name: frame[name] for name in names}
        if classes:
            for k, name in enumerate(classes):
                scores[f"{score_field}_{name}"] = probabilities[:, k]
            scores[PREDICTED_CLASS] = predicted_classes(probabilities, classes).to_numpy()
        else:
            scores[score_field] = probabilities
        return pd.DataFrame({**scores, "model_version": version})

    return engine.map_batches(sql, score, pa.schema(fields))


def _write(result: pa.Table, out: Path, version: str, started: float) -> BatchResult:
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(result, out)
    return BatchResult(result.num_rows, version, time.perf_counter() - started)
