"""New batches over time: continuation of the same customers, idempotence and drift scenarios."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy import stats

from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.errors import DataError
from flywheel.features.profile import build_profile
from flywheel.monitoring.drift import compare
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.usecases.churn.generator import simulate_batch
from flywheel.workdir import Workdir

DAYS = 60


@pytest.fixture(scope="module")
def scenario_batches(generated_workdir: Workdir) -> dict[str, dict[str, pa.Table]]:
    """The same 60 days after the generated history, simulated under every scenario (not committed)."""
    lake = Lake(generated_workdir, CHURN)
    previous = lake.latest_synthetic()
    products = lake.read("products")
    start = datetime.fromisoformat(previous["period"]["end"])
    return {
        drift: simulate_batch(
            lake.read_state(previous), previous["generator"], products, start, DAYS, drift
        ).tables
        for drift in ("none", "price_shock", "acquisition_shift", "engagement_drop")
    }


@pytest.fixture(scope="module")
def history(generated_workdir: Workdir) -> dict[str, pa.Table]:
    lake = Lake(generated_workdir, CHURN)
    return {name: lake.read(name) for name in ("users", "orders", "order_items")}


def _last_days(table: pa.Table, days: int) -> pa.Table:
    created = table.column("created_at")
    cutoff = pc.subtract(pc.max(created), pa.scalar(days * 86_400_000_000, pa.duration("us")))
    return table.filter(pc.greater(created, cutoff))


def test_simulate_appends_a_validated_batch_that_continues_ids(
    lake_copy: Workdir, small_config: FlywheelConfig
) -> None:
    lake = Lake(lake_copy, CHURN)
    before = {name: lake.read(name) for name in ("users", "orders", "order_items")}
    result = ops.simulate(small_config, lake_copy, days=30, drift="price_shock")
    assert result.created and result.batch_id == "sim-20240701-20240731"
    new_orders = Lake(lake_copy, CHURN).read("orders").slice(before["orders"].num_rows)
    assert (
        pc.min(new_orders.column("order_id")).as_py()
        == pc.max(before["orders"].column("order_id")).as_py() + 1
    )
    returning = pc.is_in(new_orders.column("user_id"), value_set=before["users"].column("id"))
    assert pc.sum(returning).as_py() > 0.8 * new_orders.num_rows  # mostly the same customers buying again
    assert ops.validate(CHURN, lake_copy).ok
    second = ops.simulate(small_config, lake_copy, days=30)
    assert second.batch_id == "sim-20240731-20240830"


def test_same_batch_id_is_a_no_op(lake_copy: Workdir, small_config: FlywheelConfig) -> None:
    first = ops.simulate(small_config, lake_copy, days=10, batch_id="b1")
    manifest = lake_copy.manifest.read_bytes()
    again = ops.simulate(small_config, lake_copy, days=10, batch_id="b1")
    assert first.created and not again.created
    assert lake_copy.manifest.read_bytes() == manifest


def test_simulate_needs_a_generated_lake(tmp_path, small_config: FlywheelConfig) -> None:
    with pytest.raises(DataError, match="no generated batch to continue"):
        ops.simulate(small_config, Workdir.at(tmp_path / "empty"))


def test_unknown_drift_is_named(generated_workdir: Workdir) -> None:
    lake = Lake(generated_workdir, CHURN)
    previous = lake.latest_synthetic()
    with pytest.raises(DataError, match="unknown drift scenario 'sideways'"):
        simulate_batch(
            lake.read_state(previous),
            previous["generator"],
            lake.read("products"),
            datetime.fromisoformat(previous["period"]["end"]),
            5,
            "sideways",
        )


def test_none_leaves_distributions_unchanged(scenario_batches, history) -> None:
    new, old = scenario_batches["none"], {k: _last_days(v, DAYS) for k, v in history.items()}
    for table, column in (("order_items", "sale_price"), ("orders", "num_of_item")):
        result = stats.ks_2samp(new[table].column(column).to_numpy(), old[table].column(column).to_numpy())
        assert result.pvalue > 0.001, (table, column, result)
    assert (
        stats.ks_2samp(
            new["users"].column("age").to_numpy(), history["users"].column("age").to_numpy()
        ).pvalue
        > 0.001
    )
    sources = sorted(set(history["users"].column("traffic_source").to_pylist()))
    counts = [
        [row.column("traffic_source").to_pylist().count(s) for s in sources]
        for row in (new["users"], history["users"])
    ]
    assert stats.chi2_contingency(counts).pvalue > 0.001
    # order volume continues at the pace of the last period (same season, same customers)
    ratio = new["orders"].num_rows / old["orders"].num_rows
    assert 0.8 < ratio < 1.25, ratio


def test_price_shock_raises_prices_and_lowers_orders(scenario_batches) -> None:
    none, shock = scenario_batches["none"], scenario_batches["price_shock"]
    ratio = np.mean(shock["order_items"].column("sale_price")) / np.mean(
        none["order_items"].column("sale_price")
    )
    assert 1.2 < ratio < 1.4
    assert shock["orders"].num_rows < 0.9 * none["orders"].num_rows


def test_acquisition_shift_brings_more_younger_paid_social_signups(scenario_batches) -> None:
    none, shift = scenario_batches["none"]["users"], scenario_batches["acquisition_shift"]["users"]
    assert shift.num_rows > 1.6 * none.num_rows

    def paid_share(users: pa.Table) -> float:
        return pc.mean(
            pc.is_in(users.column("traffic_source"), value_set=pa.array(["Facebook", "Display"]))
        ).as_py()

    assert paid_share(shift) > 0.55 > 0.2 > paid_share(none)
    assert pc.mean(shift.column("age")).as_py() < pc.mean(none.column("age")).as_py() - 8


def test_engagement_drop_halves_orders_of_existing_customers(scenario_batches, history) -> None:
    existing = history["users"].column("id")

    def existing_orders(orders: pa.Table) -> int:
        return pc.sum(pc.is_in(orders.column("user_id"), value_set=existing)).as_py()

    ratio = existing_orders(scenario_batches["engagement_drop"]["orders"]) / existing_orders(
        scenario_batches["none"]["orders"]
    )
    assert 0.3 < ratio < 0.65, ratio
    # prices and signups are untouched by this scenario
    assert (
        abs(
            scenario_batches["engagement_drop"]["users"].num_rows - scenario_batches["none"]["users"].num_rows
        )
        < 40
    )


def _drift_columns(tables: dict[str, pa.Table], existing: pa.Array) -> dict[str, pd.DataFrame]:
    """The columns each scenario moves, as frames for Flywheel's drift check: item prices, the new
    users' age and traffic source, and orders per existing customer in the period (zeros included)."""
    orders = tables["orders"].filter(pc.is_in(tables["orders"].column("user_id"), value_set=existing))
    per_customer = pd.Series(orders.column("user_id").to_numpy()).value_counts()
    return {
        "order_items": pd.DataFrame({"sale_price": tables["order_items"].column("sale_price").to_numpy()}),
        "users": tables["users"].select(["age", "traffic_source"]).to_pandas(),
        "customers": pd.DataFrame(
            {"orders": per_customer.reindex(existing.to_numpy(), fill_value=0).to_numpy()}
        ),
    }


def test_flywheel_drift_flags_each_scenario_on_the_columns_it_changes_and_nothing_on_none(
    scenario_batches, history
) -> None:
    existing = history["users"].column("id").combine_chunks()
    frames = {drift: _drift_columns(tables, existing) for drift, tables in scenario_batches.items()}
    # the reference, as a monitor has it: the past (the history's last 60 days, all users so far);
    # orders per existing customer against the same period without a scenario (the base ages)
    past = _drift_columns(
        {**{k: _last_days(v, DAYS) for k, v in history.items()}, "users": history["users"]}, existing
    )
    past["customers"] = frames["none"]["customers"]
    reference = {name: build_profile(frame, categorical=["traffic_source"]) for name, frame in past.items()}

    def flagged(drift: str) -> set[str]:
        return {
            c.column
            for name, frame in frames[drift].items()
            for c in compare(reference[name], frame).columns
            if c.drifted
        }

    # no drift: nothing flagged, except where scipy's exact two-sample KS on the raw rows rejects too
    # (the none batch's 232 new users are 2.4 years older on average than all users: p = 0.037)
    for name, frame in frames["none"].items():
        for c in compare(reference[name], frame).columns:
            if c.drifted:
                assert c.test == "ks", c
                assert stats.ks_2samp(past[name][c.column], frame[c.column]).pvalue < 0.05, c
    assert flagged("price_shock") >= {"sale_price"}
    assert flagged("acquisition_shift") >= {"age", "traffic_source"}
    assert flagged("engagement_drop") >= {"orders"}
