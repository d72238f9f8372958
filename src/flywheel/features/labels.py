"""Labels: the use case's label rows ``(entity key, label_timestamp, label, request features)``.

Labels on the grid (``labels.cadence_days`` set) lie on the snapshot grid from the first to the last
observed moment minus the horizon (the use case's ``observed_sql``), so each label's horizon is fully
observed in the data; the wall clock plays no part. Labels off the grid carry their own times (e.g.
one per phone contact) up to the last observed moment minus the horizon. Written whole to
``features/labels.parquet`` (atomic replace) when the lake, the SQL or the label settings changed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.data.engine import Engine, open_engine, timestamp_literal
from flywheel.data.lake import Lake
from flywheel.data.schema import TIMESTAMP
from flywheel.errors import DataError
from flywheel.features.calendar import grid_dates
from flywheel.usecases.spec import UseCase
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
TIMESTAMP_COLUMN = "label_timestamp"
SOURCE_KEY, SUMMARY_KEY = b"flywheel.source", b"flywheel.summary"  # Parquet metadata of the file


@dataclass(frozen=True)
class LabelResult:
    path: Path
    rows: int
    dates: int
    positive_rate: float  # binary: the share of positives (multiclass: see ``class_shares``)
    class_shares: dict[str, float] | None = None  # multiclass: class name → share of the labels

    def mix(self) -> str:
        """The labels' class balance in words."""
        return class_mix(self.positive_rate, self.class_shares)


def class_mix(positive_rate: float, class_shares: dict[str, float] | None) -> str:
    if class_shares:
        return " · ".join(f"{name} {share:.1%}" for name, share in class_shares.items())
    return f"positive rate {positive_rate:.1%}"


def class_shares(codes: pa.ChunkedArray | pa.Array, classes: tuple[str, ...]) -> dict[str, float] | None:
    """Each named class's share of the label ``codes`` (None for a binary task)."""
    if not classes:
        return None
    counts = np.bincount(np.asarray(codes.to_numpy(zero_copy_only=False), dtype=int), minlength=len(classes))
    total = max(int(counts.sum()), 1)
    return {name: float(counts[k] / total) for k, name in enumerate(classes)}


def labels_path(workdir: Workdir) -> Path:
    return workdir.features / "labels.parquet"


def observed_range(usecase: UseCase, engine: Engine) -> tuple[datetime, datetime]:
    """The span of time whose outcomes the lake has observed (the use case's ``observed_sql``)."""
    first, last = engine.row(usecase.labels.observed_sql)
    if first is None:
        raise DataError(f"the lake has no rows to observe {usecase.name} labels from")
    return first, last


def compute(config: FlywheelConfig, lake: Lake, dates: list[datetime] | None = None) -> pa.Table:
    """Labels for every label time the lake fully observes (or, on the grid, for the given
    ``dates``, which the caller has checked are observed: ``date + horizon <= last observed``)."""
    spec, settings = config.spec, config.labels
    engine = open_engine(config, lake.workdir, lake)
    first, last = observed_range(spec, engine)
    horizon = timedelta(days=settings.horizon_days)
    if settings.cadence_days is not None:
        if dates is None:
            dates = grid_dates(config.features.anchor, settings.cadence_days, first, last - horizon)
            if not dates:
                raise DataError(
                    f"the data spans {first:%Y-%m-%d} to {last:%Y-%m-%d}: "
                    f"too short for a {horizon.days}-day label horizon"
                )
        engine.register_arrow("label_dates", pa.table({TIMESTAMP_COLUMN: pa.array(dates, TIMESTAMP)}))
    query = spec.sql_text(spec.labels.sql).format(**settings.sql_params())
    observed = timestamp_literal(last - horizon)
    where = f"WHERE {TIMESTAMP_COLUMN} <= {observed}" if settings.cadence_days is None else ""
    ordered = f"SELECT * FROM ({query}) AS l {where} ORDER BY {TIMESTAMP_COLUMN}, {spec.entity.join_key}"
    return engine.query(ordered, spec.labels.sql)


def _source(config: FlywheelConfig, lake: Lake) -> str:
    """What the labels depend on: the lake's batches, the SQL and the label settings."""
    return json.dumps(
        {
            "lake": lake.batch_ids(),
            "sql": config.spec.sql_hash(),
            "labels": config.labels.model_dump(mode="json"),
            "anchor": str(config.features.anchor),
        },
        sort_keys=True,
    )


def _held(path: Path, source: str) -> dict[bytes, bytes] | None:
    """The labels file's metadata when it holds the labels of ``source``, else None."""
    if not path.exists():
        return None
    held = pq.read_schema(path).metadata or {}
    return held if held.get(SOURCE_KEY, b"").decode() == source and SUMMARY_KEY in held else None


def build(config: FlywheelConfig, workdir: Workdir) -> LabelResult:
    """Compute the labels, unless the file already holds them for this lake, SQL and label config
    (its Parquet metadata says which): a loop tick's later builds reuse the first."""
    lake = Lake(workdir, config.spec)
    source, path = _source(config, lake), labels_path(workdir)
    held = _held(path, source)
    if held is not None:
        return LabelResult(path, **json.loads(held[SUMMARY_KEY]))
    labels = compute(config, lake)
    column = labels.column(config.labels.label_column)
    summary = {
        "rows": labels.num_rows,
        "dates": len(labels.column(TIMESTAMP_COLUMN).unique()),
        "positive_rate": (pc.mean(column).as_py() if labels.num_rows else 0.0) or 0.0,
        "class_shares": class_shares(column, config.spec.classes),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    labels = labels.replace_schema_metadata({SOURCE_KEY: source, SUMMARY_KEY: json.dumps(summary)})
    pq.write_table(labels, tmp, compression="zstd")
    os.replace(tmp, path)
    result = LabelResult(path, **summary)
    _logger.info("built %d labels over %d dates (%s)", result.rows, result.dates, result.mix())
    return result


def at_dates(config: FlywheelConfig, workdir: Workdir, dates: list[datetime]) -> pa.Table:
    """Labels at the given observable ``dates``: taken from the labels file for the dates it holds
    (when it is current for this lake), computed only for the others. Each date's labels depend on
    that date alone, so both give the same rows."""
    lake = Lake(workdir, config.spec)
    path = labels_path(workdir)
    if _held(path, _source(config, lake)) is None:
        return compute(config, lake, dates)
    labels = pq.read_table(path)
    when = labels.column(TIMESTAMP_COLUMN)
    have = set(pc.unique(when).to_pylist())
    parts = [labels.filter(pc.is_in(when, value_set=pa.array(dates, when.type)))]
    missing = [d for d in dates if d not in have]
    if missing:
        parts.append(compute(config, lake, missing).cast(labels.schema.remove_metadata()))
    return pa.concat_tables([part.replace_schema_metadata(None) for part in parts])


def current(config: FlywheelConfig, workdir: Workdir) -> pa.Table:
    """Every label the lake observes: the labels file when it is current for this lake, else
    computed (nothing is written)."""
    lake = Lake(workdir, config.spec)
    path = labels_path(workdir)
    if _held(path, _source(config, lake)) is None:
        return compute(config, lake)
    return pq.read_table(path).replace_schema_metadata(None)


def read(workdir: Workdir, path: Path | None = None) -> pa.Table:
    path = path or labels_path(workdir)
    if not path.exists():
        raise DataError(f"no labels in {workdir.features}; run `flywheel features build` first")
    return pq.read_table(path)
