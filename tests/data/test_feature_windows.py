"""Window boundaries and point-in-time rules of the feature SQL, on tiny data with known answers."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flywheel.config import default_config
from flywheel.features import snapshots
from flywheel.workdir import Workdir
from tests.tiny_lake import DAY, SECOND, Order, T, commit_tiny_lake

ORDERS = [
    Order(1, T - 365 * DAY, (7.0,)),  # exactly 365 days before T: outside every window at T
    Order(1, T - 90 * DAY, (5.0,)),  # exactly 90 days before: only in the 365-day window
    Order(1, T - 60 * DAY, (20.0,), status="Returned", returned_at=T + 2 * DAY, products=(3,)),
    Order(1, T - 30 * DAY, (10.0, 20.0), products=(1, 2)),  # exactly 30 days before: in 90d, not 30d
    Order(1, T - 30 * DAY + SECOND, (1.0,)),  # one second inside the 30-day window
    Order(1, T - 10 * DAY, (99.0,), status="Cancelled"),  # not a purchase
    Order(1, T, (2.0,), products=(4,)),  # exactly at T: included
    Order(1, T + SECOND, (1000.0,)),  # one second after T: invisible at T
    Order(2, T + SECOND, (3.0,)),  # user 2's first order comes after T
]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, str], dict]:
    workdir = Workdir.at(tmp_path_factory.mktemp("tiny") / "wd")
    commit_tiny_lake(workdir, ORDERS, period_end=T + 8 * DAY)
    snapshots.build(default_config(), workdir)
    rows = {}
    for path in snapshots.snapshot_files(workdir):
        for row in pq.read_table(path).to_pylist():
            rows[(row["customer_id"], row["feature_timestamp"].date().isoformat())] = row
    return rows


def test_windows_at_t_follow_the_stated_boundaries(features) -> None:
    row = features[(1, T.date().isoformat())]
    assert row["orders_30d"] == 2  # T-30d+1s and T
    assert row["orders_90d"] == 4  # + T-30d and T-60d; T-90d is out, the cancelled one never counts
    assert row["orders_365d"] == 5  # + T-90d; T-365d is out
    assert row["revenue_30d"] == pytest.approx(1.0 + 2.0)
    assert row["revenue_90d"] == pytest.approx(20.0 + 30.0 + 1.0 + 2.0)
    assert row["revenue_365d"] == pytest.approx(53.0 + 5.0)
    assert row["avg_order_value_90d"] == pytest.approx(53.0 / 4)
    assert row["distinct_products_90d"] == 4  # products 1, 2, 3, 4
    assert row["distinct_categories_90d"] == 2
    assert row["days_since_last_order"] == 0.0
    assert row["days_since_first_order"] == pytest.approx(365.0)  # the first order, outside the windows
    assert row["tenure_days"] == pytest.approx(730.0)
    assert row["cancel_rate_90d"] == pytest.approx(1 / 5)
    assert row["return_rate_90d"] == 0.0  # returned two days after T: not known at T
    assert row["revenue_trend_30_90"] == pytest.approx(3.0 * 3 / 53.0)
    assert row["mean_days_between_orders_365d"] == pytest.approx(90.0 / 4)


def test_a_return_counts_once_it_has_happened(features) -> None:
    row = features[(1, (T + 7 * DAY).date().isoformat())]
    assert row["orders_90d"] == 5  # (T-83d, T+7d]: T-60d, T-30d, T-30d+1s, T, T+1s
    assert row["return_rate_90d"] == pytest.approx(1 / 5)
    assert row["revenue_30d"] == pytest.approx(1000.0 + 2.0)  # (T-23d, T+7d]: T and T+1s


def test_customers_enter_only_after_their_first_purchase(features) -> None:
    assert (2, T.date().isoformat()) not in features
    later = features[(2, (T + 7 * DAY).date().isoformat())]
    assert later["orders_30d"] == 1 and later["days_since_last_order"] == pytest.approx(7 - 1 / 86400)


def test_the_window_start_day_itself(features) -> None:
    # a week before T the first order (T-365d) is 358 days old, so it still counts in the 365-day
    # window, and T-30d is 23 days old, so it is inside the 30-day window
    row = features[(1, (T - 7 * DAY).date().isoformat())]
    assert row["orders_365d"] == 5  # T-365d, T-90d, T-60d, T-30d, T-30d+1s
    assert row["orders_30d"] == 2  # T-30d and T-30d+1s


def test_missing_lake_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="is empty; run `flywheel data generate`"):
        snapshots.build(default_config(), Workdir.at(tmp_path / "none"))


def test_a_lake_without_orders_is_a_clear_error(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    commit_tiny_lake(workdir, [], period_end=T)
    with pytest.raises(Exception, match="has no rows to compute features_customer from"):
        snapshots.build(default_config(), workdir)
