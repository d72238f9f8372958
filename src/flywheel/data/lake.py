"""The lake and its manifest.

Layout: ``lake/raw/<table>/batch=<id>/part-0.parquet`` for the use case's raw tables and
``lake/sim/<state table>/batch=<id>/part-0.parquet`` for a synthetic world's latent state.
``lake/manifest.json`` lists every committed batch; it is the only index readers use, so a file not
named there is not part of the lake.

A lake created with ``lake.format: iceberg`` keeps its raw tables as Iceberg tables instead
(:mod:`flywheel.data.iceberg`): each batch appends one snapshot per table, and the manifest records
those snapshot ids, so readers see each table as of the last committed batch and time travel to any
earlier one. The format is a lake's own: fixed when its first batch is committed, read from the
manifest afterwards (a Parquet lake keeps working as it is whatever the configuration says).

A commit is atomic: the batch is written to ``<workdir>/.staging``, validated there, each table folder
is renamed into the lake, and the manifest is replaced last (write, fsync, ``os.replace``). A crash
before the manifest is replaced leaves at most orphan folders no reader sees; the next commit
removes them. A rejected batch leaves the lake byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.data.batch import Batch
from flywheel.data.engine import DuckEngine, Engine
from flywheel.data.iceberg import NAMESPACE, IcebergTables, default_catalog
from flywheel.data.validation import (
    BatchRejected,
    ValidationReport,
    check_relations,
    check_values,
    conform,
)
from flywheel.errors import DataError
from flywheel.usecases.spec import UseCase
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
MANIFEST_VERSION = 1
FORMATS = ("parquet", "iceberg")
E = TypeVar("E", bound=Engine)


class Lake:
    """Read and commit batches of one use case's raw tables under one workdir.

    ``new_format`` and ``catalog`` (Iceberg catalog properties; default the embedded SQLite one)
    apply only to a lake whose first batch is still to come."""

    def __init__(
        self,
        workdir: Workdir,
        usecase: UseCase,
        new_format: str = "parquet",
        catalog: dict[str, str] | None = None,
        namespace: str | None = None,
    ):
        if new_format not in FORMATS:
            raise DataError(f"lake.format: unknown format {new_format!r}; expected one of {list(FORMATS)}")
        self.workdir = workdir
        self.usecase = usecase
        self.tables = usecase.tables
        self.state_dir = f"sim/{usecase.state_table}"
        self.new_format, self.new_catalog = new_format, dict(catalog or {})
        self.new_namespace = namespace
        self._iceberg_tables: IcebergTables | None = None

    # ---- reading -------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        path = self.workdir.manifest
        if not path.exists():
            return {"version": MANIFEST_VERSION, "batches": []}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: manifest is not valid JSON ({error})") from None

    def batches(self) -> list[dict[str, Any]]:
        return self.manifest()["batches"]

    def batch_ids(self) -> list[str]:
        return [b["batch_id"] for b in self.batches()]

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        return next((b for b in self.batches() if b["batch_id"] == batch_id), None)

    def is_empty(self) -> bool:
        return not self.batches()

    @property
    def format(self) -> str:
        """``parquet`` or ``iceberg``: the manifest's, or for an empty lake the one it will be made in."""
        manifest = self.manifest()
        return manifest.get("format", "parquet") if manifest["batches"] else self.new_format

    def iceberg(self) -> IcebergTables:
        """The lake's Iceberg tables (an Iceberg lake only)."""
        if self._iceberg_tables is None:
            settings = self.manifest().get("iceberg") or {}
            catalog = settings.get("catalog") or self.new_catalog or default_catalog(self.workdir)
            namespace = settings.get("namespace") or self._namespace()
            self._iceberg_tables = IcebergTables(catalog, namespace)
        return self._iceberg_tables

    def _lake_id(self) -> str:
        """This lake's id, which its Iceberg snapshots carry: the manifest's, or before the manifest
        records one (the first commit, or a lake made before ids) ``lake/lake_id``, made once
        (exclusively, under the commit lock) before any snapshot is written."""
        recorded = (self.manifest().get("iceberg") or {}).get("lake_id")
        if recorded:
            return recorded
        path = self.workdir.lake / "lake_id"
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), open(path, "x") as handle:
            handle.write(uuid.uuid4().hex[:16] + "\n")
        return path.read_text().strip()

    def _owner(self) -> str | None:
        """Whose snapshots a commit may undo (an interrupted commit's): this lake's, by the id the
        manifest records, or on the first commit by the id just made. A lake made before ids
        records none and checks none: an interrupted commit elsewhere may have made another."""
        recorded = (self.manifest().get("iceberg") or {}).get("lake_id")
        return recorded if recorded or self.batches() else self._lake_id()

    def _namespace(self) -> str:
        """The namespace a new Iceberg lake's tables go in: ``flywheel`` in the embedded catalog (the
        workdir's own), ``flywheel_<use case>`` in a configured one, or the one configured."""
        if self.new_namespace:
            return self.new_namespace
        if not self.new_catalog:
            return NAMESPACE
        return f"{NAMESPACE}_{re.sub(r'[^a-z0-9_]', '_', self.usecase.name.lower())}"

    def snapshot_ids(self, batches: list[dict[str, Any]] | None = None) -> dict[str, int | None]:
        """Per raw table, the Iceberg snapshot the newest of ``batches`` (default: all) touching it
        created, or None."""
        found: dict[str, int | None] = dict.fromkeys(self.tables)
        for record in batches if batches is not None else self.batches():
            for name, table in record["tables"].items():
                if table.get("snapshot_id") is not None:
                    found[name] = int(table["snapshot_id"])
        return found

    def files(self, table: str) -> list[str]:
        """Absolute paths of the committed Parquet files of ``table``, oldest batch first (an
        Iceberg lake: the data files of the table's snapshot the manifest names)."""
        if self.format == "iceberg":
            snapshot = self.snapshot_ids().get(table)
            return self.iceberg().files(table, snapshot) if snapshot is not None else []
        return [
            str(self.workdir.lake / f)
            for b in self.batches()
            for f in b["tables"].get(table, {}).get("files", [])
        ]

    def read(self, table: str) -> pa.Table:
        files = self.files(table)
        if not files:
            return self.tables[table].arrow_schema.empty_table()
        return pa.concat_tables(pq.read_table(f, schema=self.tables[table].arrow_schema) for f in files)

    def connect(self, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per raw table over the committed files."""
        return self.engine(DuckEngine(memory_limit, self.workdir.root / ".duckdb_tmp")).con

    def engine(self, engine: E) -> E:
        """``engine`` with one table per raw table over the committed files."""
        for name, spec in self.tables.items():
            engine.register_files(name, self.files(name), spec.arrow_schema)
        return engine

    def expire_snapshots(self, keep_batches: int) -> dict[str, list[int]]:
        """An Iceberg lake: expire the snapshots of every batch but the newest ``keep_batches`` (and
        each table's current one); `--as-of` an older batch is then refused. Returns the ids expired
        per table."""
        if self.format != "iceberg" or self.is_empty():
            raise DataError(f"{self.workdir.lake} is a {self.format} lake: it keeps no snapshots to expire")
        if keep_batches < 1:
            raise DataError(f"keep_batches must be at least 1, got {keep_batches}")
        with self._locked():
            kept = self.batches()[-keep_batches:]
            keep = {int(t["snapshot_id"]) for b in kept for t in b["tables"].values() if t.get("snapshot_id")}
            tables = self.iceberg()
            return {
                name: tables.expire(name, keep)
                for name, sid in self.snapshot_ids().items()
                if sid is not None
            }

    def migrate_to_iceberg(self, catalog: dict[str, str] | None = None, namespace: str | None = None) -> int:
        """Turn a Parquet lake into an Iceberg lake in place: each batch's files are registered as one
        snapshot per table (no row rewritten), then the manifest names the snapshots — replaced last,
        so an interrupted migration leaves the Parquet lake as it was (and is undone by the next
        try). Returns the snapshots made."""
        if self.format != "parquet" or self.is_empty():
            raise DataError(f"{self.workdir.lake} is not a Parquet lake with batches: nothing to migrate")
        with self._locked():
            manifest = self.manifest()
            self.new_catalog, self.new_namespace = dict(catalog or {}), namespace
            settings = {"catalog": self.new_catalog or None, "namespace": self._namespace()}
            lake_id = self._lake_id()
            settings["lake_id"] = lake_id
            tables = IcebergTables(
                self.new_catalog or default_catalog(self.workdir), self._namespace(), lake_id
            )
            # what an interrupted migration registered
            tables.reconcile(dict.fromkeys(self.tables), owner=lake_id)
            count = 0
            for record in manifest["batches"]:
                for name, table in record["tables"].items():
                    files = [str(self.workdir.lake / f) for f in table["files"]]
                    schema = self.tables[name].arrow_schema
                    table["snapshot_id"] = tables.register(name, schema, files, record["batch_id"])
                    count += 1
            manifest.update(format="iceberg", iceberg=settings)
            self._write_manifest(manifest)
            self._iceberg_tables = None
            return count

    def latest_synthetic(self) -> dict[str, Any] | None:
        """The newest batch that carries generator state, or None for a lake of real data."""
        return next((b for b in reversed(self.batches()) if b.get("generator")), None)

    def read_state(self, record: dict[str, Any]) -> pa.Table:
        return pq.read_table(self.workdir.lake / record["state"]["files"][0])

    def period_end(self) -> datetime | None:
        ends = [datetime.fromisoformat(b["period"]["end"]) for b in self.batches()]
        return max(ends) if ends else None

    # ---- writing -------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.workdir.root.mkdir(parents=True, exist_ok=True)
        with open(self.workdir.root / ".lake.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def remove_orphans(self) -> list[Path]:
        """Delete batch folders that no manifest entry names (left by a crash mid-commit)."""
        committed = {b["batch_id"] for b in self.batches()}
        removed = []
        for folder in [
            *self.workdir.raw.glob("*/batch=*"),
            *(self.workdir.lake / self.state_dir).glob("batch=*"),
        ]:
            if folder.name.removeprefix("batch=") not in committed:
                shutil.rmtree(folder)
                removed.append(folder)
        if removed:
            _logger.warning("removed %d orphan batch folder(s) left by an interrupted commit", len(removed))
        return removed

    def commit(
        self, batch: Batch, on_stage: Callable[[str], None] | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Validate and add ``batch`` atomically. Returns (manifest record, whether it was new).

        Raises:
            BatchRejected: the batch failed validation; the report is written to ``reports/``.
        """
        with self._locked():
            existing = self.batch(batch.batch_id)
            if existing is not None:
                _logger.info("batch %s is already in the lake; nothing to do", batch.batch_id)
                return existing, False
            self.remove_orphans()
            staging = self.workdir.staging / f"{batch.batch_id}-{uuid.uuid4().hex[:8]}"
            try:
                record = self._stage_and_validate(batch, staging, on_stage or (lambda _: None))
                self._publish(batch, staging, record)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return record, True

    def _stage_and_validate(
        self, batch: Batch, staging: Path, on_stage: Callable[[str], None]
    ) -> dict[str, Any]:
        unknown = set(batch.tables) - set(self.tables)
        if unknown:
            raise DataError(
                f"batch {batch.batch_id}: unknown table(s) {sorted(unknown)}; "
                f"expected {self.usecase.name} tables {list(self.usecase.table_order)}"
            )
        report = ValidationReport(batch.batch_id, {n: t.num_rows for n, t in batch.tables.items()})
        on_stage("conform and check values")
        conformed: dict[str, pa.Table] = {}
        for name in [n for n in self.usecase.table_order if n in batch.tables]:
            table, failures = conform(self.tables[name], batch.tables[name])
            report.failures.extend(failures)
            if table is not None:
                report.failures.extend(check_values(self.tables[name], table))
                conformed[name] = table
        if report.failures:
            self._reject(report)

        on_stage("stage")
        record: dict[str, Any] = {
            "batch_id": batch.batch_id,
            "kind": batch.kind,
            "committed_at": datetime.now(UTC).isoformat(),
            "period": {"start": batch.period_start.isoformat(), "end": batch.period_end.isoformat()},
            "tables": {},
            "state": None,
            "generator": batch.generator,
            "sources": batch.sources,
        }
        staged: dict[str, list[str]] = {}
        for name, table in conformed.items():
            relative = f"raw/{name}/batch={batch.batch_id}/part-0.parquet"
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.cast(self.tables[name].arrow_schema), path, compression="zstd")
            staged[name] = [str(path)]
            record["tables"][name] = {
                "files": [relative],
                "rows": table.num_rows,
                "time_range": _time_range(table, self.tables[name].time_column),
                "schema_hash": self.tables[name].schema_hash,
            }
        if batch.state is not None:
            relative = f"{self.state_dir}/batch={batch.batch_id}/part-0.parquet"
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(batch.state, staging / relative, compression="zstd")
            record["state"] = {"files": [relative], "rows": batch.state.num_rows}

        on_stage("check relations")
        lake_files = {name: self.files(name) for name in self.tables}
        report.failures.extend(check_relations(self.usecase, staged, lake_files, batch.period_end))
        if report.failures:
            self._reject(report)
        return record

    def _reject(self, report: ValidationReport) -> None:
        path = report.write(self.workdir.reports)
        raise BatchRejected(report, path)

    def _publish(self, batch: Batch, staging: Path, record: dict[str, Any]) -> None:
        manifest = self.manifest()
        if not manifest["batches"]:  # the first batch makes the lake in its format
            manifest["format"] = self.new_format
            if self.new_format == "iceberg":
                manifest["iceberg"] = {"catalog": self.new_catalog or None, "namespace": self._namespace()}
        if manifest.get("format") == "iceberg":
            manifest["iceberg"]["lake_id"] = self._append_snapshots(batch, staging, record)
        folders = [Path(f).parent for t in record["tables"].values() for f in t["files"]]
        if record["state"]:
            folders.append(Path(record["state"]["files"][0]).parent)
        for folder in folders:
            target = self.workdir.lake / folder
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging / folder, target)
        manifest["batches"].append(record)
        self._write_manifest(manifest)
        _logger.info(
            "committed batch %s (%s)",
            batch.batch_id,
            ", ".join(f"{n}={t['rows']}" for n, t in record["tables"].items()),
        )

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace the manifest atomically (write, fsync, rename): the commit point."""
        tmp = self.workdir.manifest.with_suffix(".json.tmp")
        with open(tmp, "w") as handle:
            json.dump(manifest, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.workdir.manifest)

    def _append_snapshots(self, batch: Batch, staging: Path, record: dict[str, Any]) -> str:
        """Each table's validated rows as one Iceberg snapshot, after undoing what an interrupted
        commit appended; the record names the snapshots instead of files. Returns the lake's id."""
        tables = self.iceberg()
        tables.lake_id = self._lake_id()
        tables.reconcile(self.snapshot_ids(), owner=self._owner())
        for name, table in record["tables"].items():
            rows = pq.read_table(staging / table["files"][0])
            table["snapshot_id"] = tables.append(name, rows, batch.batch_id)
            table["files"] = []  # Iceberg owns the data files
        return tables.lake_id


def _time_range(table: pa.Table, column: str | None) -> list[str] | None:
    if column is None or table.num_rows == 0:
        return None
    bounds = pc.min_max(table.column(column))
    return [bounds["min"].as_py().isoformat(), bounds["max"].as_py().isoformat()]
