"""Validation of a batch before it enters the lake.

Three layers, each reporting failures as (check, table, column, failing-row count, example rows):

1. ``conform`` — every expected column is present, no unexpected column, and each value converts to
   the table's type (DuckDB ``TRY_CAST``, so a CSV of strings conforms and a wrong type is caught);
2. ``check_values`` — pandera schemas per table: nullability, allowed values, ranges;
3. ``check_relations`` — SQL checks across tables, against the batch *and* what the lake already
   holds: primary-key uniqueness, foreign keys, lifecycle timestamp order, nulls implied by the
   ordered lifecycle timestamps, no timestamp after the batch's period end, and the use case's own
   checks (``UseCase.relation_checks``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from flywheel.data import _pandera
from flywheel.data.duck import DUCK_TYPES, connect, select_table
from flywheel.data.schema import TIMESTAMP, TableSpec
from flywheel.errors import DataError
from flywheel.usecases.spec import UseCase

pda = _pandera.load()

MAX_EXAMPLES = 5


@dataclass
class CheckFailure:
    check: str
    table: str
    column: str | None
    failing_rows: int
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationReport:
    batch_id: str
    rows: dict[str, int]
    failures: list[CheckFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "ok": self.ok,
            "rows": self.rows,
            "failures": [asdict(f) for f in self.failures],
        }

    def write(self, reports_dir: Path) -> Path:
        reports_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = reports_dir / f"validation-{self.batch_id}-{stamp}.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def summary(self) -> str:
        if self.ok:
            return f"batch {self.batch_id}: all checks passed ({sum(self.rows.values())} rows)"
        parts = [
            f"{f.check} on {f.table}.{f.column or '*'} ({f.failing_rows} rows)" for f in self.failures[:5]
        ]
        more = f"; and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        return f"batch {self.batch_id}: {len(self.failures)} check(s) failed: " + "; ".join(parts) + more


class BatchRejected(DataError):
    """A batch failed validation; nothing was written to the lake."""

    def __init__(self, report: ValidationReport, report_path: Path | None = None):
        self.report = report
        self.report_path = report_path
        where = f"; report: {report_path}" if report_path else ""
        super().__init__(f"rejected {report.summary()}{where}")


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (None if v is None or v is pd.NaT else str(v)) for k, v in row.items()} for row in rows]


def conform(spec: TableSpec, table: pa.Table) -> tuple[pa.Table | None, list[CheckFailure]]:
    """Cast ``table`` to the spec's types (all nullable); report missing, extra, unconvertible columns."""
    failures = []
    present = set(table.column_names)
    for name in spec.column_names:
        if name not in present:
            failures.append(
                CheckFailure(
                    "missing_column",
                    spec.name,
                    name,
                    table.num_rows,
                    f"expected column '{name}' is missing",
                    [{"columns_found": ", ".join(table.column_names)}],
                )
            )
    for name in table.column_names:
        if name not in spec.column_names:
            failures.append(
                CheckFailure(
                    "unexpected_column",
                    spec.name,
                    name,
                    table.num_rows,
                    f"column '{name}' is not part of the {spec.name} schema",
                    _jsonable([{name: v} for v in table.column(name)[:MAX_EXAMPLES].to_pylist()]),
                )
            )
    if failures:
        return None, failures
    if table.schema.names == spec.column_names and all(
        table.schema.field(c.name).type == c.type for c in spec.columns
    ):
        return table.cast(spec.loose_schema), []
    con = connect()
    con.register("incoming", table)
    selects = []
    for column in spec.columns:
        actual = table.schema.field(column.name).type
        target = DUCK_TYPES[column.type]
        if actual == column.type:
            selects.append(f'"{column.name}"')
            continue
        bad = con.execute(
            f'SELECT count(*) FROM incoming WHERE "{column.name}" IS NOT NULL '
            f'AND TRY_CAST("{column.name}" AS {target}) IS NULL'
        ).fetchall()[0][0]
        if bad:
            examples = con.execute(
                f'SELECT "{column.name}" FROM incoming WHERE "{column.name}" IS NOT NULL '
                f'AND TRY_CAST("{column.name}" AS {target}) IS NULL LIMIT {MAX_EXAMPLES}'
            ).fetchall()
            examples = [{column.name: row[0]} for row in examples]
            failures.append(
                CheckFailure(
                    "type",
                    spec.name,
                    column.name,
                    bad,
                    f"expected {column.type}, got {actual} values that do not convert",
                    _jsonable(examples),
                )
            )
        selects.append(f'TRY_CAST("{column.name}" AS {target}) AS "{column.name}"')
    if failures:
        return None, failures
    result = con.sql(f"SELECT {', '.join(selects)} FROM incoming").to_arrow_table()
    return result.cast(spec.loose_schema), []


def _pandera_schema(spec: TableSpec) -> pda.DataFrameSchema:
    columns = {}
    for column in spec.columns:
        checks = []
        if column.allowed is not None:
            checks.append(pda.Check.isin(column.allowed))
        if column.min_value is not None:
            checks.append(pda.Check.ge(column.min_value))
        if column.max_value is not None:
            checks.append(pda.Check.le(column.max_value))
        columns[column.name] = pda.Column(nullable=column.nullable, checks=checks)
    return pda.DataFrameSchema(columns, name=spec.name)


def check_values(spec: TableSpec, table: pa.Table) -> list[CheckFailure]:
    """pandera per-column checks: nullability, allowed values and ranges."""
    frame = table.to_pandas()
    try:
        _pandera_schema(spec).validate(frame, lazy=True)
    except pda.errors.SchemaErrors as error:
        cases = error.failure_cases
        failures = []
        for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
            index = group["index"].dropna().astype("int64").unique()
            examples = frame.iloc[index[:MAX_EXAMPLES]].to_dict("records") if len(index) else []
            name = "not_null" if str(check) == "not_nullable" else str(check)
            failures.append(
                CheckFailure(name, spec.name, str(column), len(group), f"{check} failed", _jsonable(examples))
            )
        return failures
    return []


def _relation_checks(
    tables: dict[str, TableSpec], order: tuple[str, ...], batch_tables: set[str], period_end: datetime
) -> list[tuple[str, str, str | None, str, str]]:
    """(check, table, column, message, SQL selecting the failing rows of the batch table)."""
    checks = []
    for name in (n for n in order if n in batch_tables):  # a stable order of failures
        spec = tables[name]
        pk = spec.primary_key
        checks.append(
            (
                "duplicate_key",
                name,
                pk,
                f"{pk} must be unique across the batch and the lake",
                f"SELECT * FROM {name}_batch WHERE {pk} IN "
                f"(SELECT {pk} FROM {name}_all GROUP BY {pk} HAVING count(*) > 1)",
            )
        )
        for fk in spec.foreign_keys:
            checks.append(
                (
                    "foreign_key",
                    name,
                    fk.column,
                    f"{fk.column} must reference {fk.table}.{fk.target}",
                    f"SELECT * FROM {name}_batch c WHERE c.{fk.column} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {fk.table}_all p WHERE p.{fk.target} = c.{fk.column})",
                )
            )
        if spec.lifecycle:
            steps = spec.lifecycle
            later = [
                f"{column} < " + (f"coalesce({', '.join(reversed(steps[:i]))})" if i > 1 else steps[0])
                for i, column in enumerate(steps)
                if i
            ]
            checks.append(
                (
                    "timestamp_order",
                    name,
                    ",".join(steps),
                    f"timestamps must satisfy {' ≤ '.join(c.removesuffix('_at') for c in steps)}",
                    f"SELECT * FROM {name}_batch WHERE {' OR '.join(later)}",
                )
            )
        # one check per column, so that a rejection names the column that lies in the future
        for column in (c.name for c in spec.columns if c.type == TIMESTAMP):
            checks.append(
                (
                    "future_timestamp",
                    name,
                    column,
                    f"{column} must be before the batch's period end {period_end.isoformat()}",
                    f"SELECT * FROM {name}_batch WHERE {column} >= TIMESTAMPTZ '{period_end.isoformat()}'",
                )
            )
    return checks


def check_relations(
    usecase: UseCase,
    batch_files: dict[str, list[str]],
    lake_files: dict[str, list[str]],
    period_end: datetime,
) -> list[CheckFailure]:
    """Cross-table checks over Parquet files: the staged batch against the batch plus the lake (the
    keys, lifecycles and times every table spec states, then the use case's own checks)."""
    con = connect()
    for name, spec in usecase.tables.items():
        batch = select_table(spec.arrow_schema, batch_files.get(name, []))
        lake = select_table(spec.arrow_schema, lake_files.get(name, []))
        con.execute(f"CREATE VIEW {name}_batch AS {batch}")
        con.execute(f"CREATE VIEW {name}_all AS ({batch}) UNION ALL ({lake})")
    failures = []
    present = set(batch_files)
    checks = [
        *_relation_checks(usecase.tables, usecase.table_order, present, period_end),
        *(check for check in usecase.relation_checks if check[1] in present),
    ]
    for check, table, column, message, sql in checks:
        count = con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0]
        if count:
            examples = con.sql(f"SELECT * FROM ({sql}) LIMIT {MAX_EXAMPLES}").to_arrow_table()
            failures.append(
                CheckFailure(check, table, column, int(count), message, _jsonable(examples.to_pylist()))
            )
    return failures
