"""The pipeline's ``validate`` step: the lake is still what was committed, checked from the files'
footers (each batch was validated when it was committed), never by re-reading the rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir


def test_an_intact_lake_passes_without_reading_rows(lake_copy: Workdir, monkeypatch) -> None:
    def no_rows(*args, **kwargs):
        raise AssertionError("verify read rows")

    monkeypatch.setattr(pq, "read_table", no_rows)
    report = ops.verify(CHURN, lake_copy)
    assert report.ok, report.summary()
    assert report.rows == {name: rows for name, rows in ops.status(CHURN, lake_copy)[0]["rows"].items()}


def test_a_missing_truncated_or_foreign_file_fails(lake_copy: Workdir) -> None:
    lake = Lake(lake_copy, CHURN)
    orders, items, users = (lake.files(name)[0] for name in ("orders", "order_items", "users"))
    table = pq.read_table(items)
    pq.write_table(table.slice(0, table.num_rows - 3), items)  # rows lost
    pq.write_table(pa.table({"id": [1, 2]}), users)  # not the users schema any more
    (lake_copy.lake / orders).unlink()
    report = ops.verify(CHURN, lake_copy)
    problems = {failure.table: failure.message for failure in report.failures}
    assert set(problems) == {"orders", "order_items", "users"}
    assert "unreadable" in problems["orders"]
    assert (
        f"{table.num_rows} rows committed, {table.num_rows - 3} in the files now" in problems["order_items"]
    )
    assert "no longer has the users schema" in problems["users"]
