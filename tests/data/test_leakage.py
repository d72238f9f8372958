"""Leakage: no feature sees the future, no training row uses a later snapshot, no label a later order."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig
from flywheel.data.engine import sections
from flywheel.data.lake import Lake
from flywheel.features import dataset
from flywheel.features.snapshots import snapshot_files
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir


def _splits(workdir: Workdir) -> dict[str, pa.Table]:
    folder = dataset.latest(workdir)
    return {name: pq.read_table(folder / f"{name}.parquet") for name in dataset.SPLITS}


def test_features_do_not_change_when_the_future_is_removed(featured_workdir: Workdir) -> None:
    """Recompute one mid-history snapshot from a lake cut at its timestamp: the values must not move."""
    files = snapshot_files(featured_workdir)
    stored = pq.read_table(files[len(files) // 2])
    t = stored.column("feature_timestamp")[0].as_py()
    con = Lake(featured_workdir, CHURN).connect()
    cut = f"TIMESTAMPTZ '{t.isoformat()}'"
    for name in ("orders", "order_items"):
        con.execute(
            f"CREATE VIEW {name}_past AS SELECT * REPLACE "
            f"(CASE WHEN returned_at <= {cut} THEN returned_at END AS returned_at) "
            f"FROM {name} WHERE created_at <= {cut}"
        )
    con.execute(f"CREATE VIEW users_past AS SELECT * FROM users WHERE created_at <= {cut}")
    con.execute(f"CREATE TEMP TABLE snapshot_dates AS SELECT {cut} AS feature_timestamp")
    query, replaced = re.subn(
        r"\b(FROM|JOIN) (orders|order_items|users)\b", r"\1 \2_past", CHURN.sql_text(CHURN.snapshot.sql)
    )
    assert replaced == 6  # every read of a time-stamped table goes through the cut
    preps, query = sections(query)
    for name, select in preps:
        con.execute(f"CREATE TEMP TABLE {name} AS {select}")
    recomputed = con.sql(f"SELECT * FROM ({query}) ORDER BY customer_id").to_arrow_table()
    expected = stored.drop_columns(["created_timestamp"]).sort_by("customer_id")
    assert recomputed.num_rows == expected.num_rows > 100
    assert recomputed.to_pylist() == expected.cast(recomputed.schema).to_pylist()


def test_no_training_row_uses_a_later_or_expired_snapshot(
    featured_workdir: Workdir, small_config: FlywheelConfig
) -> None:
    ttl = timedelta(days=small_config.features.ttl_days)
    for name, table in _splits(featured_workdir).items():
        label_ts = table.column("label_timestamp")
        feature_ts = table.column("feature_timestamp")
        assert pc.all(pc.less_equal(feature_ts, label_ts)).as_py(), name
        assert pc.all(pc.greater_equal(feature_ts, pc.subtract(label_ts, pa.scalar(ttl)))).as_py(), name
        assert table.column("feature_timestamp").null_count == 0, name  # the same population: all matched


def test_labels_horizons_stay_inside_the_data(
    featured_workdir: Workdir, small_config: FlywheelConfig
) -> None:
    con = Lake(featured_workdir, CHURN).connect()
    (last_order,) = con.execute("SELECT max(created_at) FROM orders").fetchall()[0]
    horizon = timedelta(days=small_config.labels.horizon_days)
    for name, table in _splits(featured_workdir).items():
        assert pc.max(table.column("label_timestamp")).as_py() + horizon <= last_order, name


def test_splits_are_ordered_in_time_with_purge_gaps(
    featured_workdir: Workdir, small_config: FlywheelConfig
) -> None:
    splits = _splits(featured_workdir)
    horizon = timedelta(days=small_config.labels.horizon_days)
    bounds = {name: pc.min_max(t.column("label_timestamp")) for name, t in splits.items()}
    assert bounds["train"]["max"].as_py() + horizon < bounds["valid"]["min"].as_py()
    assert bounds["valid"]["max"].as_py() + horizon < bounds["test"]["min"].as_py()
    rows = {name: t.num_rows for name, t in splits.items()}
    total = sum(rows.values())
    assert rows["train"] / total == pytest.approx(0.7, abs=0.08)
    assert rows["valid"] / total == pytest.approx(0.15, abs=0.06)


def test_training_rows_are_unique_and_complete(featured_workdir: Workdir) -> None:
    metadata = json.loads((dataset.latest(featured_workdir) / "metadata.json").read_text())
    splits = _splits(featured_workdir)
    keys = [
        (r["customer_id"], r["label_timestamp"])
        for t in splits.values()
        for r in t.select(["customer_id", "label_timestamp"]).to_pylist()
    ]
    assert len(keys) == len(set(keys))
    assert len(keys) + metadata["rows_purged"] == metadata["rows_in"]
    assert metadata["splits"]["train"]["rows"] == splits["train"].num_rows
    assert set(metadata["features"]) <= set(splits["train"].column_names)
    assert metadata["categorical_features"] == ["gender", "traffic_source", "country"]
