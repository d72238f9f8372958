"""Reading real exports (CSV or Parquet) into a batch.

A use case may read files in its own published layout (``UseCase.read_file``). Otherwise file names
pick the table: ``<table>.csv``, ``<table>.parquet`` and BigQuery's sharded exports such as
``<table>-000000000000.csv`` all work. CSV columns are read as text and converted to the tables'
types by validation, so a BigQuery export (``2023-01-06 07:59:00 UTC`` timestamps) loads as it is.

Real data cannot come from the future: an ingested batch's period ends at the latest at now plus
``data.ingest.clock_skew_hours``, so validation's ``future_timestamp`` check rejects any later row,
naming its table, column and first rows. (Synthetic batches keep their own clock: a simulated world
may run past today.)

Quarantine: a use case's reader may leave out rows it cannot clean, with a report per file
(:class:`~flywheel.usecases.spec.Quarantine`). A file whose quarantined share exceeds
``data.ingest.max_quarantine_share`` rejects the whole batch (:class:`QuarantineRejected`, before
anything is written); otherwise the clean rows go on and the reports travel with the batch
(``Batch.quarantine``), to be written to ``reports/quarantine/<batch_id>.json``
(:func:`write_quarantine_report`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from flywheel.config import IngestConfig
from flywheel.data.batch import Batch
from flywheel.data.duck import connect
from flywheel.data.schema import TIMESTAMP
from flywheel.errors import DataError
from flywheel.usecases.spec import Quarantine, UseCase
from flywheel.workdir import Workdir

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


class QuarantineRejected(DataError):
    """A file's reader quarantined more than the allowed share of its rows; nothing was written."""

    def __init__(self, message: str, batch_id: str, quarantine: dict[str, Quarantine], bound: float):
        super().__init__(message)
        self.batch_id, self.quarantine, self.bound = batch_id, quarantine, bound
        self.report: dict[str, Any] | None = None  # set by ops.ingest, which writes the report
        self.report_path: Path | None = None


def _check_quarantine(batch_id: str, quarantine: dict[str, Quarantine], settings: IngestConfig) -> None:
    """Reject the batch when a file's quarantined share exceeds the bound, naming the file, the share,
    the bound and the rows per rule."""
    bound = settings.max_quarantine_share
    for source, report in quarantine.items():
        if report.share > bound:
            rules = ", ".join(f"{rule} {count}" for rule, count in report.counts.items())
            raise QuarantineRejected(
                f"{source}: {report.rows} of {report.rows_read} rows quarantined ({report.share:.1%}), "
                f"above data.ingest.max_quarantine_share {bound:.1%} (by rule: {rules}); the batch is "
                "rejected and the lake unchanged",
                batch_id,
                quarantine,
                bound,
            )


def quarantine_report(
    batch_id: str, quarantine: dict[str, Quarantine], accepted: bool, bound: float
) -> dict[str, Any]:
    """The JSON report of a batch's quarantined rows: per file, per rule, count, description and
    examples (personal data already masked by the reader); and the values each repair changed."""
    files = {}
    for source, report in quarantine.items():
        names = [*report.rules, *(rule for rule in report.counts if rule not in report.rules)]
        rules = {
            rule: {
                "count": report.counts.get(rule, 0),
                "description": report.rules.get(rule, ""),
                "examples": report.examples.get(rule, []),
            }
            for rule in names
        }
        repairs = {
            rule: {"values": count, "description": report.repair_rules.get(rule, "")}
            for rule, count in report.repairs.items()
        }
        files[source] = {
            "rows_read": report.rows_read,
            "rows_quarantined": report.rows,
            "share": report.share,
            "rules": rules,
            "repairs": repairs,
        }
    return {"batch_id": batch_id, "accepted": accepted, "max_quarantine_share": bound, "files": files}


def write_quarantine_report(workdir: Workdir, report: dict[str, Any]) -> Path:
    """Write a :func:`quarantine_report` to ``reports/quarantine/<batch_id>.json`` (atomic replace)."""
    path = workdir.quarantine_report(report["batch_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)
    return path


def read_csv_header(path: Path, layout: str, delimiter: str = ",") -> list[str]:
    """The header row of a CSV file (``.gz`` too) of a use case's published ``layout``, or a
    ``DataError`` naming the file when it is missing, unreadable as UTF-8 text, or empty."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; expected a {layout} CSV file") from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise DataError(f"{path}: not a readable UTF-8 CSV file ({error})") from None
    if not header:
        raise DataError(f"{path}: empty file; expected the {layout} header and rows")
    return header


def _table_for(usecase: UseCase, path: Path) -> str:
    stem = path.name
    for suffix in SUFFIXES:
        stem = stem.removesuffix(suffix)
    for name in sorted(usecase.tables, key=len, reverse=True):
        if stem == name or stem.startswith(f"{name}-") or stem.startswith(f"{name}_0"):
            return name
    raise DataError(
        f"{path}: cannot tell which table this file holds; name it after one of {list(usecase.table_order)}"
    )


def _read_csv(path: Path) -> pa.Table:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: cannot decode byte {error.object[error.start]:#04x}; expected UTF-8 text "
            "(re-export the file as UTF-8)"
        ) from None
    if not header:
        raise DataError(f"{path}: empty file; expected a CSV header and rows")
    try:
        return pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None


def _read_parquet(path: Path) -> pa.Table:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file; expected a Parquet file")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{path}: not a Parquet file ({error})") from None


def collect_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such file or directory")
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.name.endswith(SUFFIXES)))
        elif path.name.endswith(SUFFIXES):
            files.append(path)
        else:
            raise DataError(f"{path}: unsupported file type; expected one of {', '.join(SUFFIXES)}")
    if not files:
        raise DataError(f"no CSV or Parquet files found in {', '.join(map(str, paths))}")
    return files


def read_batch(
    usecase: UseCase,
    paths: list[Path],
    batch_id: str | None = None,
    period_end: datetime | None = None,
    settings: IngestConfig | None = None,
) -> Batch:
    """Read files of the use case's tables into a batch. The period ends at ``period_end`` or just
    after the data, and never after now plus the allowed clock skew. Files the use case reads in its
    own layout bring their quarantine reports along (``Batch.quarantine``).

    Raises:
        QuarantineRejected: A file's quarantined share exceeds ``data.ingest.max_quarantine_share``.
        DataError: ``period_end`` is in the future, or a file is unreadable.
    """
    settings = settings or IngestConfig()
    latest = datetime.now(UTC) + timedelta(hours=settings.clock_skew_hours)
    if period_end is not None and period_end.tzinfo is None:
        period_end = period_end.replace(tzinfo=UTC)
    if period_end is not None and period_end > latest:
        raise DataError(
            f"--period-end {period_end:%Y-%m-%d %H:%M} is in the future: a batch of real data ends by "
            f"now + data.ingest.clock_skew_hours ({latest:%Y-%m-%d %H:%M} UTC)"
        )
    files = collect_files(paths)
    parts: dict[str, list[pa.Table]] = {}
    quarantine: dict[str, Quarantine] = {}
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
        own = usecase.read_file(path) if usecase.read_file else None
        if own is not None:
            if own.quarantine is not None:
                quarantine[str(path)] = own.quarantine
            for name, table in own.tables.items():
                parts.setdefault(name, []).append(table)
            continue
        table = _read_parquet(path) if path.name.endswith((".parquet", ".pq")) else _read_csv(path)
        if table.num_rows == 0:
            raise DataError(f"{path}: empty file; it has a header but no rows")
        parts.setdefault(_table_for(usecase, path), []).append(table)
    batch_id = batch_id or f"ingest-{digest.hexdigest()[:12]}"
    _check_quarantine(batch_id, quarantine, settings)
    tables = {}
    for name, chunks in parts.items():
        try:
            tables[name] = pa.concat_tables(chunks, promote_options="permissive")
        except pa.ArrowInvalid as error:
            raise DataError(f"files of table {name} disagree on their columns ({error})") from None
    start, end = _time_bounds(usecase, tables, period_end)
    end = min(end, latest)  # rows after it are then rejected by validation, named one by one
    return Batch(
        batch_id=batch_id,
        kind="ingest",
        period_start=start,
        period_end=end,
        tables=tables,
        sources=[str(f) for f in files],
        quarantine=quarantine,
    )


def _time_bounds(
    usecase: UseCase, tables: dict[str, pa.Table], period_end: datetime | None
) -> tuple[datetime, datetime]:
    """Earliest time of each table's ``time_column``, and ``period_end`` or else just after the
    latest timestamp in the files."""
    con = connect()
    lows, highs, unreadable = [], [], []
    for name, table in tables.items():
        con.register(f"incoming_{name}", table)
        spec = usecase.tables[name]
        for column in (c.name for c in spec.columns if c.type == TIMESTAMP):
            if column not in table.column_names:
                unreadable.append(f"{name}.{column} (missing)")
                continue
            low, high = con.execute(
                f'SELECT min(TRY_CAST("{column}" AS TIMESTAMPTZ)), max(TRY_CAST("{column}" AS TIMESTAMPTZ)) '
                f"FROM incoming_{name}"
            ).fetchall()[0]
            if high is None:
                unreadable.append(f"{name}.{column} (no readable timestamp)")
                continue
            highs.append(high)
            if column == spec.time_column:
                lows.append(low)
    if period_end is not None:
        return min(lows, default=period_end), period_end
    if not highs:
        detail = f": {', '.join(unreadable)}" if unreadable else ""
        raise DataError(f"cannot tell the batch's period from the files{detail}; pass --period-end")
    return min(lows or highs), max(highs) + timedelta(microseconds=1)
