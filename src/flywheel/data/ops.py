"""The data operations behind ``flywheel data …``, callable from Python with the same names."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig, IngestConfig, LakeConfig
from flywheel.data.batch import Batch
from flywheel.data.ingest import (
    QuarantineRejected,
    quarantine_report,
    read_batch,
    write_quarantine_report,
)
from flywheel.data.lake import Lake
from flywheel.data.validation import CheckFailure, ValidationReport, check_relations, check_values, conform
from flywheel.errors import DataError
from flywheel.lock import locks_workdir
from flywheel.usecases.spec import UseCase
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CommitResult:
    batch_id: str
    created: bool
    record: dict[str, Any]
    quarantine: dict[str, Any] | None = None  # an ingested batch's quarantine report (rows left out)
    quarantine_path: Path | None = None

    @property
    def rows(self) -> dict[str, int]:
        return {name: t["rows"] for name, t in self.record["tables"].items()}


def _commit(
    usecase: UseCase,
    workdir: Workdir,
    batch: Batch,
    progress: Progress | None,
    lake: LakeConfig | None = None,
) -> CommitResult:
    lake = lake or LakeConfig()
    record, created = Lake(workdir, usecase, lake.format, lake.catalog, lake.namespace).commit(
        batch, on_stage=progress
    )
    return CommitResult(batch.batch_id, created, record)


@locks_workdir("data generate")
def generate(config: FlywheelConfig, workdir: Workdir, progress: Progress | None = None) -> CommitResult:
    """Generate the first synthetic history into an empty lake (a no-op if it is already there)."""
    spec = config.spec
    lake = Lake(workdir, spec)
    batch_id = spec.generator.generation_id(config.data.generator)
    existing = lake.batch(batch_id)
    if existing is not None:
        _logger.info("batch %s is already in the lake; nothing to do", batch_id)
        return CommitResult(batch_id, False, existing)
    if not lake.is_empty():
        raise DataError(
            f"{workdir.lake} already holds data ({', '.join(b['batch_id'] for b in lake.batches())}); "
            "generate starts a new lake: use another --workdir or delete this one"
        )
    if progress:
        progress("generate")
    return _commit(
        spec, workdir, spec.generator.generate(config.data.generator, batch_id), progress, config.lake
    )


@locks_workdir("data simulate")
def simulate(
    config: FlywheelConfig,
    workdir: Workdir,
    days: int | None = None,
    drift: str | None = None,
    batch_id: str | None = None,
    progress: Progress | None = None,
) -> CommitResult:
    """Append the next period of the synthetic world, continuing its latent state."""
    spec = config.spec
    lake = Lake(workdir, spec)
    existing = lake.batch(batch_id) if batch_id is not None else None
    if existing is not None:
        _logger.info("batch %s is already in the lake; nothing to do", batch_id)
        return CommitResult(batch_id, False, existing)
    previous = lake.latest_synthetic()
    if previous is None:
        raise DataError(
            f"{workdir.lake} holds no generated batch to continue; run `flywheel data generate` first"
        )
    if progress:
        progress("simulate")
    batch = spec.generator.simulate(
        lake, previous, days or config.data.simulate.days, drift or config.data.simulate.drift, batch_id
    )
    return _commit(spec, workdir, batch, progress)


@locks_workdir("data ingest")
def ingest(
    usecase: UseCase,
    workdir: Workdir,
    paths: list[Path],
    batch_id: str | None = None,
    period_end: datetime | None = None,
    progress: Progress | None = None,
    settings: IngestConfig | None = None,
    lake: LakeConfig | None = None,
) -> CommitResult:
    """Validate and add real files of the use case's tables (CSV or Parquet, or its own layout) as one
    batch (``settings``: the config's ``data.ingest``, e.g. how far past now a timestamp may lie;
    ``lake``: the format a new lake is made in)."""
    settings = settings or IngestConfig()
    if progress:
        progress("read")
    try:
        batch = read_batch(usecase, paths, batch_id, period_end, settings)
    except QuarantineRejected as rejected:  # the report says why, rule by rule; the lake is untouched
        report = quarantine_report(rejected.batch_id, rejected.quarantine, False, rejected.bound)
        rejected.report, rejected.report_path = report, write_quarantine_report(workdir, report)
        raise
    result = _commit(usecase, workdir, batch, progress, lake)
    if not batch.quarantine:
        return result
    report = quarantine_report(batch.batch_id, batch.quarantine, True, settings.max_quarantine_share)
    return dataclasses.replace(
        result, quarantine=report, quarantine_path=write_quarantine_report(workdir, report)
    )


@locks_workdir("data commit")
def commit(
    usecase: UseCase,
    workdir: Workdir,
    batch: Batch,
    progress: Progress | None = None,
    lake: LakeConfig | None = None,
) -> CommitResult:
    """Validate and add a batch built in Python (e.g. a month of a replayed file) atomically."""
    return _commit(usecase, workdir, batch, progress, lake)


def validate(usecase: UseCase, workdir: Workdir, progress: Progress | None = None) -> ValidationReport:
    """Re-check the whole lake: every committed file against its schema and every cross-table rule."""
    lake = Lake(workdir, usecase)
    if lake.is_empty():
        raise DataError(
            f"{workdir.lake} is empty; run `flywheel data generate` or `flywheel data ingest` first"
        )
    files = {name: lake.files(name) for name in usecase.table_order}
    missing = [f for fs in files.values() for f in fs if not Path(f).exists()]
    if missing:
        raise DataError(f"the manifest names {len(missing)} missing file(s), e.g. {missing[0]}")
    report = ValidationReport("lake", {name: 0 for name in usecase.table_order if files[name]})
    for name in report.rows:
        if progress:
            progress(f"check {name}")
        table = lake.read(name)
        report.rows[name] = table.num_rows
        conformed, failures = conform(usecase.tables[name], table)
        report.failures.extend(failures or check_values(usecase.tables[name], conformed))
    if progress:
        progress("check relations")
    present = {n: f for n, f in files.items() if f}
    report.failures.extend(check_relations(usecase, present, {}, lake.period_end()))
    report.write(workdir.reports)
    return report


def verify(usecase: UseCase, workdir: Workdir) -> ValidationReport:
    """The pipeline's ``validate``: every batch was validated when it was committed, so check only
    that the lake is still what was committed — each file the manifest names exists, and its Parquet
    footer has the committed row count and the table's schema. Reads footers, never rows."""
    lake = Lake(workdir, usecase)
    if lake.is_empty():
        raise DataError(
            f"{workdir.lake} is empty; run `flywheel data generate` or `flywheel data ingest` first"
        )
    report = ValidationReport("lake", {})
    if lake.format == "iceberg":
        return _verify_iceberg(lake, report)
    for batch in lake.batches():
        for name, table in batch["tables"].items():
            report.rows[name] = report.rows.get(name, 0) + table["rows"]
            rows, failed = 0, len(report.failures)
            for relative in table["files"]:
                path = workdir.lake / relative
                try:
                    footer = pq.read_metadata(path)
                except (OSError, pa.ArrowInvalid) as error:
                    report.failures.append(_integrity(batch, name, f"{relative} unreadable: {error}"))
                    continue
                rows += footer.num_rows
                expected = usecase.tables[name].arrow_schema
                if not footer.schema.to_arrow_schema().remove_metadata().equals(expected):
                    report.failures.append(
                        _integrity(batch, name, f"{relative} no longer has the {name} schema")
                    )
            if rows != table["rows"] and len(report.failures) == failed:  # this table of this batch
                report.failures.append(
                    _integrity(batch, name, f"{table['rows']} rows committed, {rows} in the files now")
                )
    return report


def _verify_iceberg(lake: Lake, report: ValidationReport) -> ValidationReport:
    """An Iceberg lake is what was committed when every batch's snapshot added the rows it committed
    (unless expired by retention) and each table's data files as of its newest snapshot are readable,
    with the table's columns, and hold the snapshot's rows."""
    tables = lake.iceberg()
    batches = lake.batches()
    recorded = lake.snapshot_ids()
    for name, current in recorded.items():
        if current is None:
            continue
        added = {s["snapshot_id"]: s for s in tables.snapshots(name)}
        for batch in batches:
            table = batch["tables"].get(name)
            if table is None:
                continue
            report.rows[name] = report.rows.get(name, 0) + table["rows"]
            found = added.get(table["snapshot_id"])
            if found is not None and found["added_rows"] != table["rows"]:
                message = f"{table['rows']} rows committed, its snapshot added {found['added_rows']}"
                report.failures.append(_integrity(batch, name, message))
        expected = [field.name for field in lake.usecase.tables[name].arrow_schema]
        rows = 0
        for path in tables.files(name, current):
            try:
                footer = pq.read_metadata(path)
            except (OSError, pa.ArrowInvalid) as error:
                report.failures.append(_integrity(batches[-1], name, f"{path} unreadable: {error}"))
                continue
            rows += footer.num_rows
            if footer.schema.to_arrow_schema().names != expected:
                report.failures.append(
                    _integrity(batches[-1], name, f"{path} no longer has the {name} columns")
                )
        total = added[current]["rows"] if current in added else None
        if total is not None and rows != total:
            message = f"the snapshot holds {total} rows, its files {rows}"
            report.failures.append(_integrity(batches[-1], name, message))
    return report


def _integrity(batch: dict[str, Any], table: str, message: str) -> CheckFailure:
    return CheckFailure("lake_integrity", table, None, 0, f"batch {batch['batch_id']}: {message}")


def status(usecase: UseCase, workdir: Workdir) -> list[dict[str, Any]]:
    """One row per committed batch: id, kind, period and row counts."""
    return [
        {
            "batch_id": b["batch_id"],
            "kind": b["kind"],
            "period_start": b["period"]["start"],
            "period_end": b["period"]["end"],
            "drift": (b.get("generator") or {}).get("drift"),
            "rows": {n: t["rows"] for n, t in b["tables"].items()},
        }
        for b in Lake(workdir, usecase).batches()
    ]


def snapshots(usecase: UseCase, workdir: Workdir) -> list[dict[str, Any]]:
    """An Iceberg lake's snapshots, table by table, oldest first (a Parquet lake has none)."""
    lake = Lake(workdir, usecase)
    if lake.format != "iceberg" or lake.is_empty():
        return []
    tables = lake.iceberg()
    recorded = lake.snapshot_ids()
    return [
        s for name in usecase.table_order if recorded.get(name) is not None for s in tables.snapshots(name)
    ]
