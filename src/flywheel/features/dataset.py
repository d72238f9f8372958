"""The training set: labels joined point-in-time to the feature snapshots, split by time.

Split by ``label_timestamp`` (never at random): the earliest label dates holding ``train_ratio`` of
the rows train, the next ``valid_ratio`` validate, the rest test. With ``purge`` (the default) the
label dates within one horizon after each boundary are dropped, so no training label's horizon
reaches into the validation period and no validation label's into the test period.

Writes ``datasets/<id>/{train,valid,test}.parquet`` and ``metadata.json``; the id is a hash of
everything the rows depend on, and ``datasets/LATEST`` names the newest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel import cancel
from flywheel.config import FlywheelConfig
from flywheel.data.engine import DuckEngine, Engine, open_engine
from flywheel.data.lake import Lake
from flywheel.errors import ConfigError, DataError
from flywheel.features import labels as labels_module
from flywheel.features.pit import point_in_time_join
from flywheel.features.snapshots import (
    CREATED_COLUMN,
    TIMESTAMP_COLUMN,
    context_files,
    key_columns,
    read_manifest,
    require_snapshots,
    table_dir,
)
from flywheel.lock import locks_workdir
from flywheel.workdir import STAGING_PREFIX, Workdir

_logger = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DatasetResult:
    dataset_id: str
    path: Path
    metadata: dict[str, Any]


def feature_sources(config: FlywheelConfig, workdir: Workdir) -> dict[str, dict[str, pa.DataType]]:
    """Where each feature comes from and its type: the snapshot view, each context view (by name),
    and the request (the label rows' columns a caller sends)."""
    spec = config.spec
    keys = (*key_columns(spec), TIMESTAMP_COLUMN, CREATED_COLUMN)
    schema = pq.read_schema(require_snapshots(workdir)[0])
    sources = {"snapshot": {f.name: f.type for f in schema if f.name not in keys}}
    for name, path in context_files(workdir).items():
        sources[name] = {f.name: f.type for f in pq.read_schema(path) if f.name not in keys}
    if spec.labels.request_features:
        labels = pq.read_schema(labels_module.labels_path(workdir))
        sources["request"] = {name: labels.field(name).type for name in spec.labels.request_features}
    return sources


def available_features(config: FlywheelConfig, workdir: Workdir) -> dict[str, pa.DataType]:
    """Feature columns (snapshot view, then context views, then request) and their types."""
    return {
        name: type_ for source in feature_sources(config, workdir).values() for name, type_ in source.items()
    }


def resolve_features(config: FlywheelConfig, workdir: Workdir) -> list[str]:
    """The configured feature list (default all), each checked against the built snapshots."""
    available = available_features(config, workdir)
    if config.features.names is None:
        return list(available)
    unknown = [name for name in config.features.names if name not in available]
    if unknown:
        raise ConfigError(f"features.names: unknown feature(s) {unknown}; available: {', '.join(available)}")
    return list(config.features.names)


def split_dates(
    dates: list[datetime], rows: list[int], train_ratio: float, valid_ratio: float, gap: timedelta | None
) -> dict[datetime, str | None]:
    """Assign each label date to train, valid or test (None: purged) by time, from the rows per date."""
    order = np.argsort(np.array(dates))
    ordered = np.array(dates)[order]
    gap = gap or timedelta(0)
    train_end, valid_end = _boundaries(ordered, np.asarray(rows)[order], (train_ratio, valid_ratio), gap)
    assigned: dict[datetime, str | None] = {}
    for date in ordered:
        if date <= train_end:
            assigned[date] = "train"
        elif train_end + gap < date <= valid_end:
            assigned[date] = "valid"
        elif date > valid_end + gap:
            assigned[date] = "test"
        else:
            assigned[date] = None
    return assigned


def _boundaries(
    dates: np.ndarray, rows: np.ndarray, ratios: tuple[float, float], gap: timedelta
) -> tuple[datetime, datetime]:
    """Last train and last valid label dates whose kept splits come closest to the ratios.

    The ratios apply to the rows kept after the purge gaps, so the gaps do not starve the later splits.
    """
    target = np.array([ratios[0], ratios[1], 1.0 - ratios[0] - ratios[1]])
    cumulative = np.concatenate([[0], np.cumsum(rows)])
    # the first date after each date's purge gap: where the next split can start
    after_gap = np.searchsorted(dates, np.array([d + gap for d in dates]), side="right")
    best, best_error = None, np.inf
    for train_last in range(len(dates)):  # every valid_last at once: the search is O(dates²) in numpy
        valid_first = int(after_gap[train_last])
        valid_last = np.arange(valid_first, len(dates))
        test_first = after_gap[valid_last]
        valid_last, test_first = valid_last[test_first < len(dates)], test_first[test_first < len(dates)]
        if valid_last.size == 0:
            continue
        kept = np.stack(
            [
                np.full(valid_last.size, cumulative[train_last + 1]),
                cumulative[valid_last + 1] - cumulative[valid_first],
                cumulative[-1] - cumulative[test_first],
            ],
            axis=1,
        )
        errors = np.sum((kept / kept.sum(axis=1, keepdims=True) - target) ** 2, axis=1)
        at = int(np.argmin(errors))
        if errors[at] < best_error:
            best, best_error = (dates[train_last], dates[valid_last[at]]), float(errors[at])
    if best is None:
        raise DataError(
            f"{len(dates)} label date(s) are too few for train/valid/test splits with {gap.days}-day purge "
            "gaps; generate a longer history or lower labels.cadence_days"
        )
    return best


def _labels_digest(labels: pa.Table, label: str, entity: str) -> str:
    """What identifies the labels a dataset was built from (a caller may hand any labels file)."""
    keys = labels.column(entity)
    if pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type):  # no sum: a hash of each key
        keys = pa.array(pd.util.hash_array(keys.to_numpy(zero_copy_only=False)).view("int64"))
    summary = [
        labels.num_rows,
        pc.sum(labels.column(label)).as_py(),
        pc.sum(keys).as_py(),
        pc.min_max(labels.column(labels_module.TIMESTAMP_COLUMN)).as_py(),
    ]
    return hashlib.sha256(json.dumps(summary, default=str).encode()).hexdigest()[:16]


def _snapshots(lake: Lake, batch_ids: list[str]) -> dict[str, int | None] | None:
    if lake.format != "iceberg":
        return None
    return lake.snapshot_ids([b for b in lake.batches() if b["batch_id"] in set(batch_ids)])


def _dataset_id(config: FlywheelConfig, lake_batches: list[str], features: list[str], labels: str) -> str:
    payload = json.dumps(
        {
            "labels_read": labels,
            "sql": config.spec.sql_hash(),
            "lake": lake_batches,
            "features": features,
            "labels": config.labels.model_dump(mode="json"),
            "dataset": config.dataset.model_dump(mode="json"),
            "ttl_days": config.features.ttl_days,
            "snapshots": {
                k: v
                for k, v in config.features.model_dump(mode="json").items()
                if k in ("anchor", "cadence_days")
            },
        },
        sort_keys=True,
    )
    return "ds-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


@locks_workdir("features dataset")
def build(
    config: FlywheelConfig, workdir: Workdir, chunk_rows: int | None = None, labels_path: Path | None = None
) -> DatasetResult:
    """Join labels (``labels_path``, default the workdir's) to snapshots point-in-time, split by time
    and write the dataset.

    Works through the label days in chunks of about ``chunk_rows`` label rows (default 100,000 on
    DuckDB, 1,000,000 on Spark, whose every query costs about a second), reading only the snapshot
    files a chunk can match (those within the TTL before its days), so memory stays bounded at any
    scale.
    """
    require_snapshots(workdir)
    engine = open_engine(config, workdir)
    chunk_rows = chunk_rows or (1_000_000 if engine.name == "spark" else 100_000)
    spec = config.spec
    features = resolve_features(config, workdir)
    sources = feature_sources(config, workdir)
    types = {name: type_ for source in sources.values() for name, type_ in source.items()}
    labels = labels_module.read(workdir, labels_path)
    label = config.labels.label_column
    if label not in labels.column_names:
        raise DataError(
            f"labels hold {labels.column_names}, not {label}; rebuild with `flywheel features build`"
        )
    gap = timedelta(days=config.labels.horizon_days) if config.dataset.purge else None
    # label days: labels on the grid have one time per day; event labels (a contact each) share a day
    label_day = pc.floor_temporal(labels.column(labels_module.TIMESTAMP_COLUMN), unit="day")
    counts = pc.value_counts(label_day)
    dates = counts.field("values").to_pylist()
    assigned = split_dates(
        dates, counts.field("counts").to_pylist(), config.dataset.train_ratio, config.dataset.valid_ratio, gap
    )
    snapshot_by_date = {
        datetime.fromisoformat(day).replace(tzinfo=UTC): str(table_dir(workdir) / entry["file"])
        for day, entry in read_manifest(workdir)["dates"].items()
    }

    lake_batches = (read_manifest(workdir) or {}).get("lake_batches") or Lake(workdir, spec).batch_ids()
    dataset_id = _dataset_id(
        config, lake_batches, features, _labels_digest(labels, label, spec.entity.join_key)
    )
    target = workdir.datasets / dataset_id
    # unique per builder: two builders of the same dataset id must never share a staging folder
    staging = workdir.datasets / f"{STAGING_PREFIX}{dataset_id}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    writers: dict[str, pq.ParquetWriter] = {}
    stats = {name: {"rows": 0, "positives": 0, "dates": [], "labels": []} for name in SPLITS}
    unmatched = 0
    try:
        kept_dates = sorted(d for d in dates if assigned[d] is not None)
        for chunk in _chunks(
            kept_dates, dict(zip(dates, counts.field("counts").to_pylist(), strict=True)), chunk_rows
        ):
            cancel.check()
            in_chunk = pc.is_in(label_day, value_set=pa.array(chunk, label_day.type))
            entities = labels.filter(in_chunk)
            days = label_day.filter(in_chunk)
            joined = _join(config, workdir, entities, features, sources, snapshot_by_date, chunk[0], engine)
            unmatched += joined.column(TIMESTAMP_COLUMN).null_count
            for date in chunk:
                name = assigned[date]
                part = joined.filter(pc.equal(days, pa.scalar(date, days.type)))
                if name not in writers:
                    writers[name] = pq.ParquetWriter(
                        staging / f"{name}.parquet", part.schema, compression="zstd"
                    )
                writers[name].write_table(part)
                stats[name]["rows"] += part.num_rows
                stats[name]["positives"] += pc.sum(part.column(label)).as_py() or 0
                stats[name]["labels"].append(part.column(label).combine_chunks())
                stats[name]["dates"].append(date)
    finally:
        for writer in writers.values():
            writer.close()
    empty = [name for name in SPLITS if stats[name]["rows"] == 0]
    if empty:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"the {', '.join(empty)} split(s) are empty; generate a longer history")
    metadata = {
        "dataset_id": dataset_id,
        "created_at": datetime.now(UTC).isoformat(),
        "label_column": label,
        "time_column": labels_module.TIMESTAMP_COLUMN,
        "entity_column": spec.entity.join_key,
        "feature_timestamp_column": TIMESTAMP_COLUMN,
        "features": features,
        "categorical_features": [name for name in features if pa.types.is_string(types[name])],
        "splits": {
            name: {
                "rows": s["rows"],
                **(
                    {"class_shares": labels_module.class_shares(pa.chunked_array(s["labels"]), spec.classes)}
                    if spec.classes
                    else {"positive_rate": s["positives"] / s["rows"]}
                ),
                "label_dates": len(s["dates"]),
                "time_range": [min(s["dates"]).isoformat(), max(s["dates"]).isoformat()],
            }
            for name, s in stats.items()
        },
        "rows_in": labels.num_rows,
        "rows_purged": labels.num_rows - sum(s["rows"] for s in stats.values()),
        "rows_without_features": unmatched,
        "purge_gap_days": gap.days if gap else 0,
        "ttl_days": config.features.ttl_days,
        "lake_batches": lake_batches,
        # an Iceberg lake's snapshot of each table those batches end at (`--as-of` takes either)
        "lake_snapshots": _snapshots(Lake(workdir, spec), lake_batches),
        "sql_hash": spec.sql_hash(),
    }
    (staging / "metadata.json").write_text(json.dumps(metadata, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    (workdir.datasets / "LATEST").write_text(dataset_id + "\n")
    _logger.info("dataset %s: %s", dataset_id, {n: s["rows"] for n, s in metadata["splits"].items()})
    return DatasetResult(dataset_id, target, metadata)


def with_features(
    config: FlywheelConfig,
    workdir: Workdir,
    rows: pa.Table,
    features: list[str] | None = None,
    engine: Engine | None = None,
) -> pa.Table:
    """Label rows (the entity keys, ``label_timestamp``, any request features) with the built
    features as of each row's time, exactly as the training set joins them (``features``: default
    the configured ones). Simulated traffic and replays score rows built this way; the join runs
    on ``engine``, by default DuckDB (a replay's or a monitor's few rows), and gives the same on any."""
    snapshot_by_date = {
        datetime.fromisoformat(day).replace(tzinfo=UTC): str(table_dir(workdir) / entry["file"])
        for day, entry in read_manifest(workdir)["dates"].items()
    }
    first = pc.min(rows.column(labels_module.TIMESTAMP_COLUMN)).as_py()
    features = features or resolve_features(config, workdir)
    sources = feature_sources(config, workdir)
    return _join(config, workdir, rows, features, sources, snapshot_by_date, first, engine or DuckEngine())


def _join(
    config: FlywheelConfig,
    workdir: Workdir,
    rows: pa.Table,
    features: list[str],
    sources: dict[str, dict[str, pa.DataType]],
    snapshot_by_date: dict[datetime, str],
    first: datetime,
    engine: Engine,
) -> pa.Table:
    """``rows`` joined point-in-time to the snapshot files that can match them (within the TTL before
    ``first`` up to their latest time), then to each context view; the matched snapshot time comes
    back as ``feature_timestamp`` (null: no snapshot row)."""
    spec = config.spec
    ttl = timedelta(days=config.features.ttl_days) if config.features.ttl_days else None
    last = pc.max(rows.column(labels_module.TIMESTAMP_COLUMN)).as_py()
    earliest = first - ttl if ttl else None
    files = [
        f for d, f in sorted(snapshot_by_date.items()) if d <= last and (earliest is None or d >= earliest)
    ]
    if not files and not spec.labels.request_features:
        raise DataError(f"no snapshots cover label dates {first:%Y-%m-%d}…; rebuild the features")
    joined = point_in_time_join(
        rows,
        files or _empty_snapshot(workdir),
        entity_key=spec.snapshot.entity.join_key,
        entity_timestamp=labels_module.TIMESTAMP_COLUMN,
        feature_timestamp=TIMESTAMP_COLUMN,
        created_timestamp=CREATED_COLUMN,
        feature_names=[name for name in features if name in sources["snapshot"]],
        ttl=ttl,
        engine=engine,
        matched_timestamp=TIMESTAMP_COLUMN,
    )
    for view, path in context_files(workdir).items():
        names = [name for name in features if name in sources[view]]
        if not names:
            continue
        joined = point_in_time_join(
            joined,
            [str(path)],
            entity_key=None,
            entity_timestamp=labels_module.TIMESTAMP_COLUMN,
            feature_timestamp=TIMESTAMP_COLUMN,
            created_timestamp=CREATED_COLUMN,
            feature_names=names,
            ttl=None,
            engine=engine,
        )
    return joined


def _chunks(days: list[datetime], rows: dict[datetime, int], chunk_rows: int) -> list[list[datetime]]:
    """Consecutive runs of ``days`` holding about ``chunk_rows`` label rows each (at least one day)."""
    chunks: list[list[datetime]] = [[]]
    held = 0
    for day in days:
        if chunks[-1] and held + rows[day] > chunk_rows:
            chunks.append([])
            held = 0
        chunks[-1].append(day)
        held += rows[day]
    return [chunk for chunk in chunks if chunk]


def _empty_snapshot(workdir: Workdir) -> pa.Table:
    """The snapshot table with no rows: a chunk of label rows older than every snapshot matches none."""
    return pq.read_schema(require_snapshots(workdir)[0]).empty_table()


def latest(workdir: Workdir) -> Path:
    """The folder of the newest dataset."""
    pointer = workdir.datasets / "LATEST"
    if not pointer.exists():
        raise DataError(f"no dataset in {workdir.datasets}; run `flywheel features dataset` first")
    return workdir.datasets / pointer.read_text().strip()
