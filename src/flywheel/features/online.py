"""The online side of the feature store: apply the Feast repo, materialize, read, check skew.

Materialization writes each entity's latest snapshot to Feast's online store through
``FeatureStore.write_to_online_store``, guarded: Feast's SQLite store overwrites without comparing
event timestamps, so rows older than what the store already holds are dropped before writing. Feast
does not enforce a feature view's TTL on online reads either; :func:`get` reports the snapshot age
and marks values older than the TTL as stale.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.data.engine import DuckEngine, Engine, timestamp_literal
from flywheel.errors import DataError
from flywheel.features import repo
from flywheel.features.dataset import resolve_features
from flywheel.features.snapshots import CREATED_COLUMN, TIMESTAMP_COLUMN, context_files, require_snapshots
from flywheel.lock import locks_workdir
from flywheel.usecases.spec import UseCase
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
WRITE_BATCH = 20_000
APPLIED_MARKER = "applied.sha256"  # digest of the repo files last applied, beside the registry


@dataclass(frozen=True)
class MaterializeResult:
    candidates: int
    written: int
    skipped_older: int
    through: str | None


@dataclass
class SkewReport:
    checked: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    missing_online: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.missing_online


@locks_workdir("features apply")
def apply(config: FlywheelConfig, workdir: Workdir, if_changed: bool = False) -> list[str]:
    """Generate the repo files from the config and snapshots, and register them with Feast (with
    ``if_changed``, only when the generated files differ from what was last applied)."""
    from feast import FeatureStore

    files = require_snapshots(workdir)
    schema = pa.parquet.read_schema(files[-1])
    root = repo.render(config, workdir, schema, resolve_features(config, workdir))
    applied = root / "data" / APPLIED_MARKER
    digest = repo.digest(workdir)
    if if_changed and applied.exists() and applied.read_text() == digest and repo.is_applied(workdir):
        return []
    objects = repo.definitions(workdir)
    FeatureStore(repo_path=str(root)).apply(objects)  # creates the registry
    _write_ahead_log(config, workdir)
    applied.write_text(digest)
    return [f"{type(o).__name__} {o.name}" for o in objects]


def publish(config: FlywheelConfig, workdir: Workdir) -> tuple[list[str], MaterializeResult]:
    """Make the online store serve the newest snapshots: apply the repo if its definitions changed,
    then materialize incrementally. The last act of a successful pipeline run or loop tick."""
    applied = apply(config, workdir, if_changed=True)
    return applied, materialize(config, workdir, incremental=True)


def _write_ahead_log(config: FlywheelConfig, workdir: Workdir) -> None:
    """Put the SQLite online store in WAL mode (a property of the file): the service keeps reading
    while the loop materializes, instead of waiting on — or failing with — a locked database."""
    path = repo.repo_dir(workdir) / repo.SQLITE_ONLINE_STORE
    if config.features.online_store.type == "sqlite" and path.exists():
        with contextlib.closing(sqlite3.connect(path)) as con:
            con.execute("PRAGMA journal_mode=WAL")


def watermark_path(workdir: Workdir) -> Path:
    """The newest snapshot time materialized (``{"through": …}``), which online TTL checks count back from."""
    return repo.repo_dir(workdir) / "data" / "materialized.json"


def ttl_cutoff(workdir: Workdir, ttl_days: int) -> datetime | None:
    """The oldest snapshot time an online row may have and still count: the newest snapshot
    materialized minus the TTL — data time, never the wall clock. None without a TTL or before the
    first materialization. The one staleness rule of the CLI and the service."""
    watermark = watermark_path(workdir)
    if not ttl_days or not watermark.exists():
        return None
    return datetime.fromisoformat(json.loads(watermark.read_text())["through"]) - timedelta(days=ttl_days)


def latest_snapshots(
    usecase: UseCase,
    workdir: Workdir,
    after: datetime | None = None,
    ids: list[Any] | None = None,
    engine: Engine | None = None,
) -> pa.Table:
    """Each entity's latest snapshot row (optionally only newer than ``after`` or for some ids)."""
    engine = engine or DuckEngine()
    return engine.query(latest_sql(usecase, workdir, engine, after, ids)).drop_columns([RANK])


RANK = "latest_rank"


def latest_sql(
    usecase: UseCase,
    workdir: Workdir,
    engine: Engine,
    after: datetime | None = None,
    ids: list[Any] | None = None,
) -> str:
    """SQL on ``engine`` for each entity's latest snapshot row, by entity, with a ``RANK`` column
    of 1 (the tables it reads are registered on the engine here)."""
    key = usecase.snapshot.entity.join_key
    files = require_snapshots(workdir)
    engine.register_files("snapshots", files, pq.read_schema(files[0]))
    where = []
    if after is not None:
        where.append(f"{TIMESTAMP_COLUMN} > {timestamp_literal(after)}")
    if ids is not None:
        engine.register_arrow("wanted", pa.table({key: pa.array(ids)}))
        where.append(f"{key} IN (SELECT {key} FROM wanted)")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return (
        f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {TIMESTAMP_COLUMN} DESC, "
        f"{CREATED_COLUMN} DESC) AS {RANK} FROM snapshots {clause}) AS s WHERE {RANK} = 1 ORDER BY {key}"
    )


def _online_timestamps(store: Any, usecase: UseCase, ids: list[Any], probe: str) -> list[int]:
    """Event timestamps (epoch seconds, 0 when absent) the online store holds for ``ids``."""
    key = usecase.snapshot.entity.join_key
    response = store.get_online_features(
        features=[f"{usecase.snapshot.name}:{probe}"], entity_rows=[{key: i} for i in ids]
    ).to_dict(include_event_timestamps=True)
    return [int(ts or 0) for ts in response[f"{probe}__ts"]]


@locks_workdir("features materialize")
def materialize(
    config: FlywheelConfig,
    workdir: Workdir,
    incremental: bool = False,
    progress: Callable[[str], None] | None = None,
) -> MaterializeResult:
    """Write every entity's latest snapshot (with ``incremental``, only those newer than last time)."""
    spec = config.spec
    view, key = spec.snapshot.name, spec.snapshot.entity.join_key
    watermark = watermark_path(workdir)
    after = None
    if incremental and watermark.exists():
        after = datetime.fromisoformat(json.loads(watermark.read_text())["through"])
    rows = latest_snapshots(spec, workdir, after=after)
    store = repo.feature_store(workdir)
    features = [f.name for f in store.get_feature_view(view).features]
    written = skipped = 0
    for start in range(0, rows.num_rows, WRITE_BATCH):
        chunk = rows.slice(start, WRITE_BATCH)
        if progress:
            progress(f"materialize {start + chunk.num_rows:,}/{rows.num_rows:,}")
        ids = chunk.column(key).to_pylist()
        held = pa.array(_online_timestamps(store, spec, ids, features[0]), pa.int64())
        new = chunk.column(TIMESTAMP_COLUMN).cast(pa.int64()).to_numpy() // 1_000_000
        keep = pa.array(new >= held.to_numpy())
        chunk = chunk.filter(keep)
        skipped += len(ids) - chunk.num_rows
        if chunk.num_rows:
            frame = chunk.select([key, TIMESTAMP_COLUMN, CREATED_COLUMN, *features]).to_pandas()
            store.write_to_online_store(feature_view_name=view, df=frame)
            written += chunk.num_rows
    if _materialize_context(store, workdir):
        _logger.info("materialized the latest row of the context views")
    through = None
    if rows.num_rows:
        through = pa.compute.max(rows.column(TIMESTAMP_COLUMN)).as_py().isoformat()
        previous = json.loads(watermark.read_text())["through"] if watermark.exists() else None
        if previous is None or through > previous or written:
            # replaced whole, never rewritten in place: a running service re-reads it on change, and
            # its prediction cache keys on it (rows rewritten at the same time are new values too)
            newest = max(through, previous or through)
            staged = watermark.with_name(f".{watermark.name}.tmp")
            staged.write_text(json.dumps({"through": newest, "at": datetime.now(UTC).isoformat()}))
            os.replace(staged, watermark)
    _logger.info("materialized %d rows (%d older than the online store skipped)", written, skipped)
    return MaterializeResult(rows.num_rows, written, skipped, through)


def _materialize_context(store: Any, workdir: Workdir) -> int:
    """Write each entity-less view's latest row, unless the online store holds a row as new."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    written = 0
    for name, path in context_files(workdir).items():
        table = pa.parquet.read_table(path)
        if table.num_rows == 0:
            continue
        latest = table.slice(table.num_rows - 1)  # sorted by time when built
        view = store.get_feature_view(name)
        [(held, _)] = store._get_provider().online_read(
            config=store.config, table=view, entity_keys=[EntityKey()]
        )
        if held is not None and held >= latest.column(TIMESTAMP_COLUMN)[0].as_py():
            continue
        store.write_to_online_store(feature_view_name=name, df=latest.to_pandas())
        written += 1
    return written


def get(config: FlywheelConfig, workdir: Workdir, ids: list[Any]) -> list[dict[str, Any]]:
    """Online feature values per entity, with the snapshot time and whether it is older than the TTL
    (counted back from the newest snapshot materialized)."""
    view, key = config.spec.snapshot.name, config.spec.snapshot.entity.join_key
    store = repo.feature_store(workdir)
    features = [f.name for f in store.get_feature_view(view).features]
    response = store.get_online_features(
        features=[f"{view}:{name}" for name in features],
        entity_rows=[{key: i} for i in ids],
    ).to_dict(include_event_timestamps=True)
    cutoff = ttl_cutoff(workdir, config.features.ttl_days)
    results = []
    for index, entity in enumerate(ids):
        seconds = max(int(response[f"{name}__ts"][index] or 0) for name in features)
        snapshot = datetime.fromtimestamp(seconds, UTC) if seconds else None
        results.append(
            {
                key: entity,
                "found": snapshot is not None,
                TIMESTAMP_COLUMN: snapshot.isoformat() if snapshot else None,
                "stale": bool(snapshot and cutoff and snapshot < cutoff),
                "features": {name: response[name][index] for name in features},
            }
        )
    return results


def check_skew(config: FlywheelConfig, workdir: Workdir, sample: int = 200, seed: int = 0) -> SkewReport:
    """Compare online values with each sampled entity's latest offline snapshot; they must be equal."""
    import numpy as np

    key = config.spec.snapshot.entity.join_key
    offline = latest_snapshots(config.spec, workdir)
    if offline.num_rows == 0:
        raise DataError("the snapshots hold no entities to check")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(offline.num_rows, min(sample, offline.num_rows), replace=False))
    offline = offline.take(pa.array(picks))
    ids = offline.column(key).to_pylist()
    online = {row[key]: row for row in get(config, workdir, ids)}
    report = SkewReport(checked=len(ids))
    for row in offline.to_pylist():
        got = online[row[key]]
        if not got["found"]:
            report.missing_online.append(row[key])
            continue
        if got[TIMESTAMP_COLUMN] != row[TIMESTAMP_COLUMN].isoformat():
            report.mismatches.append(
                {
                    key: row[key],
                    "feature": TIMESTAMP_COLUMN,
                    "offline": row[TIMESTAMP_COLUMN].isoformat(),
                    "online": got[TIMESTAMP_COLUMN],
                }
            )
        for name, value in got["features"].items():
            if value != row[name] and not (value is None and row[name] is None):
                report.mismatches.append(
                    {key: row[key], "feature": name, "offline": row[name], "online": value}
                )
    return report
