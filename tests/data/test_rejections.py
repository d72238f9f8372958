"""Bad input is rejected whole with a message naming the problem, and the lake stays byte-identical."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.data.schema import TIMESTAMP
from flywheel.data.validation import BatchRejected
from flywheel.errors import DataError
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.usecases.churn.generator import simulate_batch
from flywheel.workdir import Workdir
from tests.conftest import tree_digest

Tables = dict[str, pa.Table]


@pytest.fixture(scope="module")
def next_period(generated_workdir: Workdir) -> Tables:
    """A valid next batch (20 days after the history) in memory, to be written as files and spoiled."""
    lake = Lake(generated_workdir, CHURN)
    previous = lake.latest_synthetic()
    batch = simulate_batch(
        lake.read_state(previous),
        previous["generator"],
        lake.read("products"),
        datetime.fromisoformat(previous["period"]["end"]),
        20,
        "none",
    )
    return batch.tables


def bigquery_csv(table: pa.Table, path: Path) -> None:
    """Write like a BigQuery CSV export: timestamps as ``2024-07-01 10:00:00.000000 UTC``."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        if field.type == TIMESTAMP:
            column = pc.binary_join_element_wise(pc.strftime(column, format="%Y-%m-%d %H:%M:%S"), " UTC", "")
        columns.append(column)
    pacsv.write_csv(pa.table(columns, names=table.column_names), path)


def write(folder: Path, tables: Tables, fmt: str = "csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if fmt == "csv":
            bigquery_csv(table, folder / f"{name}.csv")
        else:
            pq.write_table(table, folder / f"{name}.parquet")
    return folder


def replace(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, values)


def first_row_set(table: pa.Table, column: str, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[0] = value
    return replace(table, column, pa.array(values, type=table.schema.field(column).type))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_clean_export_is_ingested(
    lake_copy: Workdir, next_period: Tables, tmp_path: Path, fmt: str
) -> None:
    result = ops.ingest(CHURN, lake_copy, [write(tmp_path / "in", next_period, fmt)])
    assert result.created and result.rows == {name: t.num_rows for name, t in next_period.items()}
    assert Lake(lake_copy, CHURN).read("orders").num_rows > next_period["orders"].num_rows
    assert ops.validate(CHURN, lake_copy).ok
    assert not ops.ingest(CHURN, lake_copy, [tmp_path / "in"]).created  # same files again: a no-op


def _drop_email(t: Tables) -> Tables:
    return {**t, "users": t["users"].drop_columns(["email"])}


def _age_as_text(t: Tables) -> Tables:
    ages = pc.cast(t["users"].column("age"), pa.string()).to_pylist()
    ages[0] = "abc"
    return {**t, "users": replace(t["users"], "age", pa.array(ages))}


def _duplicate_order(t: Tables) -> Tables:
    return {**t, "orders": pa.concat_tables([t["orders"], t["orders"].slice(0, 1)])}


def _existing_user_id(t: Tables) -> Tables:
    return {**t, "users": first_row_set(t["users"], "id", 1)}


def _dangling_product(t: Tables) -> Tables:
    return {**t, "order_items": first_row_set(t["order_items"], "product_id", 10**9)}


def _shipped_after_delivery(t: Tables) -> Tables:
    orders = t["orders"]
    delivered = pc.indices_nonzero(pc.is_valid(orders.column("delivered_at")))[0].as_py()
    shipped = orders.column("shipped_at").to_pylist()
    shipped[delivered] = orders.column("delivered_at")[delivered].as_py() + timedelta(days=1)
    return {**t, "orders": replace(orders, "shipped_at", pa.array(shipped, type=TIMESTAMP))}


def _missing_item(t: Tables) -> Tables:
    return {**t, "order_items": t["order_items"].slice(1)}


def _null_email(t: Tables) -> Tables:
    return {**t, "users": first_row_set(t["users"], "email", None)}


def _unknown_status(t: Tables) -> Tables:
    return {**t, "orders": first_row_set(t["orders"], "status", "Lost")}


BAD_TABLES: dict[str, tuple[Callable[[Tables], Tables], str]] = {
    "missing column": (_drop_email, r"missing_column on users\.email"),
    "wrong type": (_age_as_text, r"type on users\.age \(1 rows\)"),
    "duplicate key in batch": (_duplicate_order, r"duplicate_key on orders\.order_id \(2 rows\)"),
    "duplicate key with lake": (_existing_user_id, r"duplicate_key on users\.id \(1 rows\)"),
    "dangling foreign key": (_dangling_product, r"foreign_key on order_items\.product_id \(1 rows\)"),
    "out-of-order timestamps": (_shipped_after_delivery, r"timestamp_order on orders\.created_at,shipped_at"),
    "items per order": (_missing_item, r"items_per_order on orders\.num_of_item \(1 rows\)"),
    "null in required column": (_null_email, r"not_null on users\.email \(1 rows\)"),
    "value outside allowed set": (_unknown_status, r"isin\(.*\) on orders\.status \(1 rows\)"),
}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_batch_is_rejected_and_lake_unchanged(
    lake_copy: Workdir, next_period: Tables, tmp_path: Path, case: str, fmt: str
) -> None:
    spoil, expected = BAD_TABLES[case]
    folder = write(tmp_path / "in", spoil(next_period), fmt)
    before = tree_digest(lake_copy.lake)
    with pytest.raises(BatchRejected, match=expected) as caught:
        ops.ingest(CHURN, lake_copy, [folder])
    assert tree_digest(lake_copy.lake) == before
    report = json.loads(caught.value.report_path.read_text())
    assert not report["ok"] and report["failures"][0]["examples"]
    assert not list(lake_copy.staging.glob("*"))


def test_timestamps_after_the_declared_period_are_rejected(
    lake_copy: Workdir, next_period: Tables, tmp_path: Path
) -> None:
    folder = write(tmp_path / "in", next_period)
    end = datetime.fromisoformat(Lake(lake_copy, CHURN).batches()[-1]["period"]["end"]) + timedelta(days=10)
    before = tree_digest(lake_copy.lake)
    with pytest.raises(BatchRejected, match=r"future_timestamp on orders"):
        ops.ingest(CHURN, lake_copy, [folder], period_end=end)
    assert tree_digest(lake_copy.lake) == before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("users.csv", b"", r"users\.csv: empty file"),
        ("users.csv", b"id,first_name\n", r"users\.csv: empty file; it has a header but no rows"),
        ("users.parquet", b"", r"users\.parquet: empty file"),
        ("orders.parquet", b"order_id,user_id\n1,2\n", r"orders\.parquet: not a Parquet file"),
        ("customers.csv", b"id\n1\n", r"customers\.csv: cannot tell which table"),
        ("orders.json", b"{}", r"orders\.json: unsupported file type"),
    ],
)
def test_unreadable_files_are_refused_and_lake_unchanged(
    lake_copy: Workdir, tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    (tmp_path / name).write_bytes(content)
    before = tree_digest(lake_copy.lake)
    with pytest.raises(DataError, match=expected):
        ops.ingest(CHURN, lake_copy, [tmp_path / name])
    assert tree_digest(lake_copy.lake) == before


def _moved_to(tables: Tables, year: int) -> Tables:
    """The same consistent batch with every timestamp moved by one offset so that it starts in ``year``."""
    start = pc.min(tables["orders"].column("created_at")).as_py()
    offset = pa.scalar(datetime(year, 1, 1, tzinfo=start.tzinfo) - start, type=pa.duration("us"))
    moved = {}
    for name, table in tables.items():
        for field in table.schema:
            if field.type == TIMESTAMP:
                table = replace(table, field.name, pc.add(table.column(field.name), offset))
        moved[name] = table
    return moved


FUTURE = datetime.now(UTC).year + 5  # a year no clock skew reaches, whenever the suite runs


def test_a_batch_dated_in_the_future_is_rejected_and_lake_unchanged(
    lake_copy: Workdir, next_period: Tables, tmp_path: Path
) -> None:
    """Issue 11, item 8: a consistent batch with every timestamp in 2031 was accepted."""
    folder = write(tmp_path / "in", _moved_to(next_period, FUTURE))
    before = tree_digest(lake_copy.lake)
    with pytest.raises(BatchRejected, match=r"future_timestamp on \w+\.created_at") as caught:
        ops.ingest(CHURN, lake_copy, [folder])
    assert tree_digest(lake_copy.lake) == before and not list(lake_copy.staging.glob("*"))
    failures = json.loads(caught.value.report_path.read_text())["failures"]
    named = {(f["table"], f["column"]) for f in failures if f["check"] == "future_timestamp"}
    assert {("users", "created_at"), ("orders", "created_at"), ("order_items", "created_at")} <= named
    orders = next(f for f in failures if (f["table"], f["column"]) == ("orders", "created_at"))
    assert orders["failing_rows"] == next_period["orders"].num_rows
    assert orders["examples"][0]["created_at"].startswith(f"{FUTURE}-")


def test_a_period_end_in_the_future_is_refused(
    lake_copy: Workdir, next_period: Tables, tmp_path: Path
) -> None:
    folder = write(tmp_path / "in", next_period)
    before = tree_digest(lake_copy.lake)
    with pytest.raises(DataError, match=rf"--period-end {FUTURE}-01-01 00:00 is in the future"):
        ops.ingest(CHURN, lake_copy, [folder], period_end=datetime(FUTURE, 1, 1, tzinfo=UTC))
    assert tree_digest(lake_copy.lake) == before


def test_the_configured_clock_skew_reaches_ingest(
    lake_copy: Workdir, next_period: Tables, tmp_path: Path
) -> None:
    """`data.ingest.clock_skew_hours` is what ingest applies (it once stayed at its default)."""
    from flywheel.config import IngestConfig

    folder = write(tmp_path / "in", _moved_to(next_period, FUTURE))
    lenient = IngestConfig(clock_skew_hours=24 * 365 * 10)
    assert ops.ingest(CHURN, lake_copy, [folder], settings=lenient).created
