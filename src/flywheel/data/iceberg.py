"""The lake's raw tables as Apache Iceberg tables (pyiceberg), one snapshot per committed batch.

By default the catalog is pyiceberg's SQL catalog on a SQLite file in the workdir
(``lake/iceberg/catalog.db``, no server) with the warehouse beside it; any pyiceberg catalog (REST,
Hive, Glue) and object storage are chosen by the catalog properties of ``lake.catalog``. The lake's
manifest stays the commit point of a batch across its tables: it records, per table, the snapshot
the batch created, and readers read each table as of the snapshot the manifest names. So a batch
whose tables were appended but whose manifest was never written (a killed commit) is seen by no
reader, and the next commit rolls those tables back (:meth:`IcebergTables.reconcile`).

pyiceberg is imported lazily: a Parquet lake never loads it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

import pyarrow as pa

from flywheel.errors import DataError
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
NAMESPACE = "flywheel"
BATCH_PROPERTY = "flywheel.batch_id"  # every snapshot names the batch that made it…
LAKE_PROPERTY = "flywheel.lake_id"  # …and the lake (a catalog may be shared: see reconcile)


def default_catalog(workdir: Workdir) -> dict[str, str]:
    """The embedded catalog: SQLite and a file warehouse under the workdir's lake."""
    folder = workdir.lake / "iceberg"
    return {
        "type": "sql",
        "uri": f"sqlite:///{folder / 'catalog.db'}",
        "warehouse": f"file://{folder / 'warehouse'}",
    }


class IcebergTables:
    """One use case's raw tables in one Iceberg catalog namespace."""

    def __init__(self, properties: dict[str, str], namespace: str = NAMESPACE, lake_id: str | None = None):
        self.properties, self.namespace, self.lake_id = dict(properties), namespace, lake_id
        self._catalog: Any = None

    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            from pyiceberg.catalog import load_catalog

            uri = self.properties.get("uri", "")
            if uri.startswith("sqlite:///"):  # the catalog's folder, created on first use
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            try:
                catalog = load_catalog("flywheel", **self.properties)
                catalog.create_namespace_if_not_exists(self.namespace)
            except Exception as exc:  # pyiceberg's own, or its HTTP / SQL client's: all unreachable
                where = _redacted(self.properties.get("uri", "")) or self.properties.get("type", "default")
                raise DataError(
                    f"lake.catalog: cannot open the Iceberg catalog at {where} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                ) from exc
            self._catalog = catalog
        return self._catalog

    def table(self, name: str, schema: pa.Schema | None = None) -> Any:
        """The Iceberg table ``name``, created with ``schema`` when it does not exist yet."""
        from pyiceberg.exceptions import NoSuchTableError

        identifier = f"{self.namespace}.{name}"
        try:
            return self.catalog.load_table(identifier)
        except NoSuchTableError:
            if schema is None:
                raise DataError(f"the lake has no Iceberg table {identifier}") from None
            return self.catalog.create_table(identifier, schema=schema)

    def append(self, name: str, rows: pa.Table, batch_id: str) -> int:
        """Append ``rows`` as one snapshot (Iceberg's own atomic commit); returns its id."""
        table = self.table(name, rows.schema)
        table.append(rows, snapshot_properties=self._properties(batch_id))
        return int(table.current_snapshot().snapshot_id)

    def register(self, name: str, schema: pa.Schema, files: list[str], batch_id: str) -> int:
        """Register Parquet ``files`` already written (a migrated lake's) as one snapshot, in place —
        no row is rewritten; returns its id."""
        table = self.table(name, schema)
        table.add_files(files, snapshot_properties=self._properties(batch_id))
        return int(table.current_snapshot().snapshot_id)

    def _properties(self, batch_id: str) -> dict[str, str]:
        return {BATCH_PROPERTY: batch_id, **({LAKE_PROPERTY: self.lake_id} if self.lake_id else {})}

    def files(self, name: str, snapshot_id: int) -> list[str]:
        """The data files of table ``name`` as of ``snapshot_id``, as local paths where they are local."""
        tasks = self.table(name).scan(snapshot_id=snapshot_id).plan_files()
        return [_local(task.file.file_path) for task in tasks]

    def snapshots(self, name: str) -> list[dict[str, Any]]:
        """Every snapshot of table ``name``, oldest first: id, time, batch, rows added and in all."""
        table = self.table(name)
        current = table.current_snapshot()
        out = []
        for snapshot in table.snapshots():
            summary = snapshot.summary.additional_properties if snapshot.summary else {}
            out.append(
                {
                    "table": name,
                    "snapshot_id": int(snapshot.snapshot_id),
                    "committed_at": snapshot.timestamp_ms,
                    "batch_id": summary.get(BATCH_PROPERTY),
                    "added_rows": int(summary.get("added-records", 0)),
                    "rows": int(summary.get("total-records", 0)),
                    "current": current is not None and snapshot.snapshot_id == current.snapshot_id,
                }
            )
        return out

    def expire(self, name: str, keep: set[int]) -> list[int]:
        """Expire every snapshot of table ``name`` but ``keep`` and the current one; returns the ids
        expired. The tables only grow, so every data file stays live in the current snapshot: expiry
        trims metadata and time travel, never rows."""
        table = self.table(name)
        current = table.current_snapshot()
        keep = keep | ({current.snapshot_id} if current else set())
        expired = [s.snapshot_id for s in table.snapshots() if s.snapshot_id not in keep]
        if expired:
            table.maintenance.expire_snapshots().by_ids(expired).commit()
        return [int(i) for i in expired]

    def has_snapshot(self, name: str, snapshot_id: int) -> bool:
        return self.table(name).snapshot_by_id(snapshot_id) is not None

    def reconcile(self, recorded: dict[str, int | None], owner: str | None = None) -> list[str]:
        """Roll each table back to the snapshot the manifest records (a table the manifest never
        recorded is dropped): what a killed commit appended is undone — only snapshots of the lake
        ``owner`` (or of none), never another lake's. Returns the tables changed."""
        from pyiceberg.exceptions import NoSuchTableError

        changed = []
        for name, snapshot_id in recorded.items():
            try:
                table = self.catalog.load_table(f"{self.namespace}.{name}")
            except NoSuchTableError:
                continue
            current = table.current_snapshot()
            if current is None or current.snapshot_id == snapshot_id:
                continue
            self._check_own(table, name, snapshot_id, owner)
            if snapshot_id is None:
                self.catalog.drop_table(f"{self.namespace}.{name}")
            else:
                table.manage_snapshots().set_current_snapshot(snapshot_id=snapshot_id).commit()
            changed.append(name)
        if changed:
            _logger.warning(
                "rolled back %s to the lake's manifest (an interrupted commit)", ", ".join(changed)
            )
        return changed

    def _check_own(self, table: Any, name: str, recorded: int | None, owner: str | None) -> None:
        """Refuse to undo a snapshot another lake made: the snapshots from the current one back
        along its parents to ``recorded`` (all of them when None) must be ``owner``'s or carry no
        lake id (made before ids); two lakes in one namespace would otherwise undo each other."""
        snapshot = table.current_snapshot()
        while snapshot is not None and snapshot.snapshot_id != recorded:
            made_by = (snapshot.summary.additional_properties if snapshot.summary else {}).get(LAKE_PROPERTY)
            if owner and made_by and made_by != owner:
                raise DataError(
                    f"the Iceberg table {self.namespace}.{name} holds snapshots of another lake "
                    f"({made_by}; this lake is {owner}): lakes sharing a catalog each need their own "
                    "lake.namespace, set before a lake's first batch"
                )
            parent = snapshot.parent_snapshot_id
            snapshot = table.snapshot_by_id(parent) if parent is not None else None


def _redacted(uri: str) -> str:
    """``uri`` without the user and password it may carry."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def _local(uri: str) -> str:
    """A ``file://`` URI as a path (DuckDB and Spark read either; paths are what the lake hands out)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
