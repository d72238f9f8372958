"""Churn labels: horizon boundaries, population, and a spine taken from the data, not the clock."""

from __future__ import annotations

from datetime import timedelta

import pyarrow.compute as pc
import pytest

from flywheel.config import FlywheelConfig, apply_overrides, default_config
from flywheel.data.lake import Lake
from flywheel.errors import DataError
from flywheel.features import labels
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir
from tests.tiny_lake import DAY, SECOND, Order, T, commit_tiny_lake

ORDERS = [
    Order(1, T - 10 * DAY),
    Order(1, T + 60 * DAY),  # returns exactly at the horizon: not churned
    Order(2, T - 10 * DAY),
    Order(2, T + 60 * DAY + SECOND),  # one second too late: churned
    Order(3, T - 400 * DAY),  # last order more than 365 days before T: not in the population
    Order(3, T + 5 * DAY, status="Cancelled"),
    Order(1, T + 200 * DAY),  # the last order: label dates stop 60 days before it
]


@pytest.fixture(scope="module")
def label_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, str], int]:
    workdir = Workdir.at(tmp_path_factory.mktemp("labels") / "wd")
    commit_tiny_lake(workdir, ORDERS, period_end=T + 201 * DAY)
    config = apply_overrides(default_config(), {"labels.cadence_days": 7})
    table = labels.compute(config, Lake(workdir, CHURN))
    return {
        (r["customer_id"], r["label_timestamp"].date().isoformat()): r["label_churn_60d"]
        for r in table.to_pylist()
    }


def test_horizon_boundary_is_inclusive(label_rows) -> None:
    day = T.date().isoformat()
    assert label_rows[(1, day)] == 0
    assert label_rows[(2, day)] == 1


def test_population_needs_a_purchase_within_365_days(label_rows) -> None:
    assert (3, T.date().isoformat()) not in label_rows
    assert (3, (T - 42 * DAY).date().isoformat()) in label_rows  # 358 days after its only purchase


def test_spine_ends_one_horizon_before_the_last_order(label_rows) -> None:
    last = max(day for _, day in label_rows)
    assert last <= (T + 200 * DAY - timedelta(days=60)).date().isoformat()
    assert last > (T + 200 * DAY - timedelta(days=67)).date().isoformat()  # and not earlier than needed


def test_labels_on_generated_data(generated_workdir: Workdir, small_config: FlywheelConfig) -> None:
    table = labels.compute(small_config, Lake(generated_workdir, CHURN))
    rate = pc.mean(table.column("label_churn_60d")).as_py()
    assert 0.3 < rate < 0.85
    assert table.num_rows == len({(r["customer_id"], r["label_timestamp"]) for r in table.to_pylist()})


def test_too_short_a_history_is_a_clear_error(tmp_path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    commit_tiny_lake(workdir, [Order(1, T), Order(1, T + 10 * DAY)], period_end=T + 11 * DAY)
    with pytest.raises(DataError, match="too short for a 60-day label horizon"):
        labels.compute(default_config(), Lake(workdir, CHURN))


def test_labels_are_computed_once_per_lake_state(lake_copy: Workdir, small_config: FlywheelConfig) -> None:
    """A loop tick builds the labels, and its pipeline run asks again: the second build reuses them
    until the lake, the SQL or the label settings change."""
    from flywheel.data import ops

    first = labels.build(small_config, lake_copy)
    written = first.path.stat().st_mtime_ns
    again = labels.build(small_config, lake_copy)
    assert again == first and first.path.stat().st_mtime_ns == written
    ops.simulate(small_config, lake_copy, days=60)
    grown = labels.build(small_config, lake_copy)
    assert grown.rows > first.rows and first.path.stat().st_mtime_ns != written
    shorter = labels.build(apply_overrides(small_config, {"labels.horizon_days": 30}), lake_copy)
    assert shorter.rows != grown.rows


def test_labels_at_dates_reuse_the_built_file(
    lake_copy: Workdir, small_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The performance monitor labels the log's dates (weekly) from the built file where it holds
    them (every other week) and computes only the rest — the same rows as computing them all."""
    built = labels.build(small_config, lake_copy)
    grid = sorted(set(labels.read(lake_copy).column(labels.TIMESTAMP_COLUMN).to_pylist()))[-6:]
    between = [d + timedelta(days=7) for d in grid[:-1]]  # weekly dates the label grid skips
    wanted = sorted(grid + between)
    expected = labels.compute(small_config, Lake(lake_copy, CHURN), wanted)
    asked: list[list] = []
    real = labels.compute
    monkeypatch.setattr(
        labels, "compute", lambda config, lake, dates=None: asked.append(dates) or real(config, lake, dates)
    )
    got = labels.at_dates(small_config, lake_copy, wanted)
    assert asked == [between]  # the file's dates were not computed again
    key = ["label_timestamp", "customer_id"]
    assert (
        got.sort_by([(k, "ascending") for k in key]).to_pylist()
        == expected.sort_by([(k, "ascending") for k in key]).to_pylist()
    )
    assert built.rows > 0
