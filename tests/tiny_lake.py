"""Hand-made theLook data with known answers, committed through the real lake (and its validation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from flywheel.data.batch import Batch
from flywheel.data.lake import Lake
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.usecases.churn.tables import TABLES
from flywheel.workdir import Workdir

T = datetime(2024, 3, 4, tzinfo=UTC)  # a snapshot date on the default weekly grid (anchor 2023-01-02)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


@dataclass
class Order:
    user_id: int
    created_at: datetime
    prices: tuple[float, ...] = (10.0,)
    status: str = "Complete"
    returned_at: datetime | None = None
    products: tuple[int, ...] | None = None


def commit_tiny_lake(workdir: Workdir, orders: list[Order], period_end: datetime, users: int = 3) -> None:
    """One distribution centre, four products in two categories, ``users`` users who signed up two
    years before ``T``, and the given orders (shipped 1 h and delivered 2 h after creation)."""
    products = pa.table(
        {
            "id": [1, 2, 3, 4],
            "cost": [1.0] * 4,
            "category": ["Jeans", "Jeans", "Swim", "Swim"],
            "name": ["a", "b", "c", "d"],
            "brand": ["x"] * 4,
            "retail_price": [10.0, 20.0, 30.0, 40.0],
            "department": ["Women"] * 4,
            "sku": ["s1", "s2", "s3", "s4"],
            "distribution_center_id": [1] * 4,
        },
        schema=TABLES["products"].arrow_schema,
    )
    signup = T - 730 * DAY
    user_rows = pa.table(
        {
            "id": list(range(1, users + 1)),
            "first_name": ["A"] * users,
            "last_name": ["B"] * users,
            "email": ["a@example.com"] * users,
            "age": [30] * users,
            "gender": ["F"] * users,
            "state": ["S"] * users,
            "street_address": ["1 Main St"] * users,
            "postal_code": ["00001"] * users,
            "city": ["C"] * users,
            "country": ["Japan"] * users,
            "latitude": [35.0] * users,
            "longitude": [139.0] * users,
            "traffic_source": ["Search"] * users,
            "created_at": [signup] * users,
        },
        schema=TABLES["users"].arrow_schema,
    )
    order_cols: dict[str, list] = {name: [] for name in TABLES["orders"].column_names}
    item_cols: dict[str, list] = {name: [] for name in TABLES["order_items"].column_names}
    for order_id, order in enumerate(orders, start=1):
        live = order.status != "Cancelled"
        shipped = order.created_at + timedelta(hours=1) if live else None
        delivered = order.created_at + timedelta(hours=2) if live else None
        for key, value in (
            ("order_id", order_id),
            ("user_id", order.user_id),
            ("status", order.status),
            ("gender", "F"),
            ("created_at", order.created_at),
            ("returned_at", order.returned_at),
            ("shipped_at", shipped),
            ("delivered_at", delivered),
            ("num_of_item", len(order.prices)),
        ):
            order_cols[key].append(value)
        products_of = order.products or tuple(1 for _ in order.prices)
        for price, product in zip(order.prices, products_of, strict=True):
            for key, value in (
                ("id", len(item_cols["id"]) + 1),
                ("order_id", order_id),
                ("user_id", order.user_id),
                ("product_id", product),
                ("inventory_item_id", len(item_cols["id"]) + 1),
                ("status", order.status),
                ("created_at", order.created_at),
                ("shipped_at", shipped),
                ("delivered_at", delivered),
                ("returned_at", order.returned_at),
                ("sale_price", price),
            ):
                item_cols[key].append(value)
    batch = Batch(
        batch_id="tiny",
        kind="ingest",
        period_start=signup,
        period_end=period_end,
        tables={
            "distribution_centers": pa.table(
                {"id": [1], "name": ["Memphis TN"], "latitude": [35.1], "longitude": [-89.9]},
                schema=TABLES["distribution_centers"].arrow_schema,
            ),
            "products": products,
            "users": user_rows,
            "orders": pa.table(order_cols, schema=TABLES["orders"].arrow_schema),
            "order_items": pa.table(item_cols, schema=TABLES["order_items"].arrow_schema),
        },
    )
    Lake(workdir, CHURN).commit(batch)
