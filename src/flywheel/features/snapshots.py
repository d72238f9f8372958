"""Feature snapshots, the offline store: the use case's snapshot view at every snapshot date.

One Parquet file per snapshot date under ``features/snapshots/``, one file per entity-less context
view (e.g. macro indicators over time) under ``features/context/``, rebuilt whole each time, plus
``features/manifest.json`` saying which dates are built from which lake batches and SQL. A build
computes only the dates that are missing or that a newer batch could change, in chunks of
``features.chunk_dates`` dates per SQL run (which bounds memory at scale). New files are written to a
staging folder and moved in one by one (each move atomic), and the manifest is replaced last: a
failed build leaves the previous snapshots as they were.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel import cancel
from flywheel.config import FlywheelConfig
from flywheel.data.engine import Engine, open_engine, sections
from flywheel.data.lake import Lake
from flywheel.data.schema import TIMESTAMP
from flywheel.errors import DataError
from flywheel.features.calendar import grid_dates
from flywheel.usecases.spec import UseCase
from flywheel.workdir import STAGING_PREFIX, Workdir

_logger = logging.getLogger(__name__)
TIMESTAMP_COLUMN = "feature_timestamp"
CREATED_COLUMN = "created_timestamp"


@dataclass(frozen=True)
class BuildResult:
    dates_built: list[str]
    dates_total: int
    rows_written: int
    full: bool


def table_dir(workdir: Workdir) -> Path:
    return workdir.features / "snapshots"


def context_dir(workdir: Workdir) -> Path:
    return workdir.features / "context"


def context_files(workdir: Workdir) -> dict[str, Path]:
    """The built context views' files by view name (empty when there are none)."""
    manifest = read_manifest(workdir) or {}
    return {name: context_dir(workdir) / entry["file"] for name, entry in manifest.get("context", {}).items()}


def key_columns(usecase: UseCase) -> tuple[str, str, str]:
    """The snapshot files' columns that are not features: join key, feature and created times."""
    return (usecase.snapshot.entity.join_key, TIMESTAMP_COLUMN, CREATED_COLUMN)


def manifest_path(workdir: Workdir) -> Path:
    return workdir.features / "manifest.json"


def read_manifest(workdir: Workdir) -> dict[str, Any] | None:
    path = manifest_path(workdir)
    return json.loads(path.read_text()) if path.exists() else None


def snapshot_files(workdir: Workdir) -> list[str]:
    """The built snapshot files, oldest date first (empty when nothing is built)."""
    manifest = read_manifest(workdir)
    if manifest is None:
        return []
    return [str(table_dir(workdir) / entry["file"]) for _, entry in sorted(manifest["dates"].items())]


def require_snapshots(workdir: Workdir) -> list[str]:
    files = snapshot_files(workdir)
    if not files:
        raise DataError(f"no feature snapshots in {workdir.features}; run `flywheel features build` first")
    return files


def _settings(config: FlywheelConfig) -> dict[str, Any]:
    """What built snapshots depend on besides the lake; a change means a full rebuild."""
    return {
        "sql_hash": config.spec.sql_hash(),
        "anchor": config.features.anchor.isoformat(),
        "cadence_days": config.features.cadence_days,
    }


def _dates_to_build(
    config: FlywheelConfig, lake: Lake, grid: list[datetime], manifest: dict[str, Any] | None, full: bool
) -> tuple[list[datetime], bool]:
    settings = _settings(config)
    if full or manifest is None or any(manifest.get(k) != v for k, v in settings.items()):
        return grid, True
    built = set(manifest["dates"])
    new_batches = [b for b in lake.batches() if b["batch_id"] not in set(manifest["lake_batches"])]
    # a batch can change snapshots from its period start on (real data may arrive late)
    changed_from = min((datetime.fromisoformat(b["period"]["start"]) for b in new_batches), default=None)
    todo = [d for d in grid if d.date().isoformat() not in built or (changed_from and d >= changed_from)]
    return todo, False


def build(
    config: FlywheelConfig,
    workdir: Workdir,
    full: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the missing snapshot dates (all of them with ``full`` or when the SQL changed)."""
    spec = config.spec
    view = spec.snapshot
    lake = Lake(workdir, spec)
    if lake.is_empty():
        raise DataError(
            f"{workdir.lake} is empty; run `flywheel data generate` or `flywheel data ingest` first"
        )
    engine = open_engine(config, workdir, lake)
    (first,) = engine.row(view.start_sql)
    if first is None:
        raise DataError(f"the lake in {workdir.lake} has no rows to compute {view.name} from")
    grid = grid_dates(config.features.anchor, config.features.cadence_days, first, lake.period_end())
    if not grid:
        raise DataError(f"no snapshot date falls between the data's start ({first}) and the lake's end")
    manifest = read_manifest(workdir)
    todo, full = _dates_to_build(config, lake, grid, manifest, full)

    staging = workdir.features / f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    created = datetime.now(UTC)
    preps, query = sections(spec.sql_text(view.sql))
    written: dict[str, dict[str, Any]] = {}
    try:
        for name, select in preps if todo else []:  # once per build: the tables every chunk reads
            engine.prepare(name, select, view.sql)
        chunk = config.spark.chunk_dates if engine.name == "spark" else config.features.chunk_dates
        for start in range(0, len(todo), chunk):
            cancel.check()
            dates = todo[start : start + chunk]
            if progress:
                progress(f"snapshots {start + len(dates)}/{len(todo)}")
            engine.register_arrow("snapshot_dates", pa.table({TIMESTAMP_COLUMN: pa.array(dates, TIMESTAMP)}))
            table = engine.query(query, view.sql)
            table = table.append_column(
                CREATED_COLUMN, pa.array([created] * table.num_rows, pa.timestamp("us", "UTC"))
            )
            for moment in dates:
                day = moment.date().isoformat()
                part = table.filter(
                    pc.equal(
                        table.column(TIMESTAMP_COLUMN),
                        pa.scalar(moment, table.schema.field(TIMESTAMP_COLUMN).type),
                    )
                )
                pq.write_table(
                    part.sort_by(view.entity.join_key), staging / f"{day}.parquet", compression="zstd"
                )
                written[day] = {"file": f"{day}.parquet", "rows": part.num_rows}
        context = _build_context(spec, engine, staging, created)
        _publish(
            workdir,
            staging,
            written,
            grid,
            {**_settings(config), "lake_batches": lake.batch_ids(), "context": context},
            None if full else manifest,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rows = sum(entry["rows"] for entry in written.values())
    _logger.info("built %d snapshot date(s), %d rows", len(written), rows)
    return BuildResult(sorted(written), len(grid), rows, full)


def _build_context(
    spec: UseCase, engine: Engine, staging: Path, created: datetime
) -> dict[str, dict[str, Any]]:
    """Each entity-less view over the whole lake, sorted by time, into ``staging/context/``."""
    built = {}
    for view in spec.context:
        table = engine.query(
            f"SELECT * FROM ({spec.sql_text(view.sql)}) AS v ORDER BY {TIMESTAMP_COLUMN}", view.sql
        )
        table = table.append_column(
            CREATED_COLUMN, pa.array([created] * table.num_rows, pa.timestamp("us", "UTC"))
        )
        (staging / "context").mkdir(exist_ok=True)
        pq.write_table(table, staging / "context" / f"{view.name}.parquet", compression="zstd")
        built[view.name] = {"file": f"{view.name}.parquet", "rows": table.num_rows}
    return built


def _publish(
    workdir: Workdir,
    staging: Path,
    written: dict[str, dict[str, Any]],
    grid: list[datetime],
    settings: dict[str, Any],
    previous: dict[str, Any] | None,
) -> None:
    target = table_dir(workdir)
    target.mkdir(parents=True, exist_ok=True)
    for day in written:
        os.replace(staging / f"{day}.parquet", target / f"{day}.parquet")
    if settings["context"]:
        context_dir(workdir).mkdir(parents=True, exist_ok=True)
    for entry in settings["context"].values():
        os.replace(staging / "context" / entry["file"], context_dir(workdir) / entry["file"])
    dates = {} if previous is None else dict(previous["dates"])
    dates.update(written)
    keep = {d.date().isoformat() for d in grid}
    dates = {day: entry for day, entry in dates.items() if day in keep}
    manifest = {
        **settings,
        "dates": dates,
        "built_at": datetime.now(UTC).isoformat(),
    }
    _write_json(manifest_path(workdir), manifest)
    for stale in target.glob("*.parquet"):
        if stale.stem not in dates:
            stale.unlink()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
