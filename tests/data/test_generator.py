"""Data expectations of the generated theLook tables, checked independently of the validator."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.data.duck import connect
from flywheel.data.lake import Lake
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.usecases.churn.generator import generate_batch
from flywheel.usecases.churn.tables import TABLES
from flywheel.workdir import Workdir


@pytest.fixture(scope="module")
def tables(generated_workdir: Workdir) -> dict[str, pa.Table]:
    lake = Lake(generated_workdir, CHURN)
    return {name: lake.read(name) for name in TABLES}


def test_every_table_has_the_thelook_schema(tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        assert table.schema.equals(TABLES[name].arrow_schema), name
        assert table.num_rows > 0, name


def test_primary_keys_are_unique(tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        key = table.column(TABLES[name].primary_key)
        assert pc.count_distinct(key).as_py() == table.num_rows, name


def test_every_foreign_key_resolves(tables: dict[str, pa.Table]) -> None:
    for name, spec in TABLES.items():
        for fk in spec.foreign_keys:
            child = tables[name].column(fk.column)
            parent = tables[fk.table].column(fk.target)
            assert pc.all(pc.is_in(child, value_set=parent)).as_py(), f"{name}.{fk.column}"


def test_lifecycle_timestamps_are_ordered_and_match_the_status(tables: dict[str, pa.Table]) -> None:
    con = connect()
    for name in ("orders", "order_items"):
        con.register(name, tables[name])
        bad_order = con.execute(
            f"SELECT count(*) FROM {name} WHERE shipped_at < created_at OR delivered_at < shipped_at "
            "OR returned_at < delivered_at"
        ).fetchall()[0][0]
        assert bad_order == 0
        by_status = dict(
            con.execute(
                "SELECT status, count(*) FILTER (WHERE "
                "(shipped_at IS NULL) <> (status IN ('Cancelled', 'Processing')) "
                "OR (delivered_at IS NULL) <> (status NOT IN ('Complete', 'Returned')) "
                f"OR (returned_at IS NULL) <> (status <> 'Returned')) FROM {name} GROUP BY status"
            ).fetchall()
        )
        assert set(by_status) == {"Complete", "Returned", "Shipped", "Processing", "Cancelled"}
        assert sum(by_status.values()) == 0, by_status


def test_orders_and_items_agree(tables: dict[str, pa.Table]) -> None:
    con = connect()
    con.register("orders", tables["orders"])
    con.register("order_items", tables["order_items"])
    con.register("users", tables["users"])
    mismatched = con.execute(
        "SELECT count(*) FROM orders o LEFT JOIN "
        "(SELECT order_id, count(*) n, min(user_id) u, max(user_id) u2, "
        "min(status) s, max(status) s2 FROM order_items GROUP BY 1) i USING (order_id) "
        "WHERE i.n IS DISTINCT FROM o.num_of_item OR i.u <> o.user_id OR i.u2 <> o.user_id "
        "OR i.s <> o.status OR i.s2 <> o.status"
    ).fetchall()[0][0]
    assert mismatched == 0
    before_signup = con.execute(
        "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id WHERE o.created_at < u.created_at"
    ).fetchall()[0][0]
    assert before_signup == 0
    assert set(pc.unique(tables["orders"].column("num_of_item")).to_pylist()) <= {1, 2, 3, 4}


def test_sale_price_is_derived_from_retail_price(tables: dict[str, pa.Table]) -> None:
    con = connect()
    con.register("order_items", tables["order_items"])
    con.register("products", tables["products"])
    low, high, full = con.execute(
        "SELECT min(i.sale_price / p.retail_price), max(i.sale_price / p.retail_price), "
        "avg(CASE WHEN abs(i.sale_price - p.retail_price) < 0.006 THEN 1 ELSE 0 END) "
        "FROM order_items i JOIN products p ON p.id = i.product_id"
    ).fetchall()[0]
    assert low >= 0.69 and high <= 1.0001
    assert 0.7 < full < 0.9  # most items sell at retail price, a promo share at 70–90 %


def test_timestamps_stay_inside_the_period(tables: dict[str, pa.Table], small_config: FlywheelConfig) -> None:
    start = np.datetime64(small_config.data.generator.start.isoformat(), "us")
    end = np.datetime64(small_config.data.generator.end.isoformat(), "us")
    for name in ("users", "orders", "order_items"):
        for column in ("created_at", "shipped_at", "delivered_at", "returned_at"):
            if column in tables[name].column_names:
                values = tables[name].column(column).drop_null().to_numpy().astype("datetime64[us]")
                assert values.min() >= start and values.max() < end, f"{name}.{column}"


def test_signups_are_spread_over_the_period_and_grow(tables: dict[str, pa.Table]) -> None:
    created = tables["users"].column("created_at").to_numpy()
    halves = np.array_split(np.sort(created), 2)
    span = created.max() - created.min()
    # with a linearly growing rate, the first half of users takes more than half the time
    assert halves[0].max() - created.min() > 0.55 * span
    months = created.astype("datetime64[M]")
    assert np.unique(months).size >= 17


def test_same_seed_gives_identical_tables_and_another_seed_does_not(small_config: FlywheelConfig) -> None:
    generator = small_config.data.generator.model_copy(update={"customers": 300})
    first, second = generate_batch(generator), generate_batch(generator)
    other = generate_batch(generator.model_copy(update={"seed": generator.seed + 1}))
    for name in first.tables:
        assert first.tables[name].equals(second.tables[name]), name
    assert first.state.equals(second.state)
    assert not first.tables["orders"].equals(other.tables["orders"])


def test_generate_twice_is_a_no_op_and_a_different_history_is_refused(
    lake_copy: Workdir, small_config: FlywheelConfig
) -> None:
    before = lake_copy.manifest.read_bytes()
    assert ops.generate(small_config, lake_copy).created is False
    assert lake_copy.manifest.read_bytes() == before
    other = small_config.model_copy(deep=True)
    other.data.generator.seed = 99
    with pytest.raises(Exception, match="already holds data"):
        ops.generate(other, lake_copy)


def test_manifest_records_the_batch(generated_workdir: Workdir, small_config: FlywheelConfig) -> None:
    (record,) = Lake(generated_workdir, CHURN).batches()
    assert record["kind"] == "generate"
    assert record["generator"]["seed"] == small_config.data.generator.seed
    assert record["generator"]["version"]
    users = record["tables"]["users"]
    assert users["rows"] == small_config.data.generator.customers
    assert users["schema_hash"] == TABLES["users"].schema_hash
    assert users["time_range"][0] >= "2023-01-01"
    assert all((generated_workdir.lake / f).exists() for t in record["tables"].values() for f in t["files"])


def test_validate_passes_on_a_generated_lake(lake_copy: Workdir) -> None:
    report = ops.validate(CHURN, lake_copy)
    assert report.ok, report.summary()
    assert report.rows["users"] == 1500
