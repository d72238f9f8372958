"""theLook eCommerce table schemas (column names and types as in the BigQuery public dataset) and the
cross-table checks a batch of them must pass."""

from __future__ import annotations

import pyarrow as pa

from flywheel.data.schema import TIMESTAMP, ColumnSpec, ForeignKey, TableSpec

ORDER_STATUSES = ("Complete", "Returned", "Shipped", "Processing", "Cancelled")
GENDERS = ("M", "F")
TRAFFIC_SOURCES = ("Search", "Organic", "Facebook", "Email", "Display")
DEPARTMENTS = ("Men", "Women")


def _c(name: str, type_: pa.DataType, **kw: object) -> ColumnSpec:
    return ColumnSpec(name, type_, **kw)  # type: ignore[arg-type]


_LIFECYCLE = ("created_at", "shipped_at", "delivered_at", "returned_at")

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "distribution_centers",
            "id",
            (
                _c("id", pa.int64()),
                _c("name", pa.string()),
                _c("latitude", pa.float64(), min_value=-90, max_value=90),
                _c("longitude", pa.float64(), min_value=-180, max_value=180),
            ),
        ),
        TableSpec(
            "products",
            "id",
            (
                _c("id", pa.int64()),
                _c("cost", pa.float64(), min_value=0),
                _c("category", pa.string()),
                _c("name", pa.string()),
                _c("brand", pa.string()),
                _c("retail_price", pa.float64(), min_value=0),
                _c("department", pa.string(), allowed=DEPARTMENTS),
                _c("sku", pa.string()),
                _c("distribution_center_id", pa.int64()),
            ),
            foreign_keys=(ForeignKey("distribution_center_id", "distribution_centers", "id"),),
        ),
        TableSpec(
            "users",
            "id",
            (
                _c("id", pa.int64()),
                _c("first_name", pa.string()),
                _c("last_name", pa.string()),
                _c("email", pa.string()),
                _c("age", pa.int64(), min_value=12, max_value=100),
                _c("gender", pa.string(), allowed=GENDERS),
                _c("state", pa.string()),
                _c("street_address", pa.string()),
                _c("postal_code", pa.string()),
                _c("city", pa.string(), nullable=True),
                _c("country", pa.string()),
                _c("latitude", pa.float64(), min_value=-90, max_value=90),
                _c("longitude", pa.float64(), min_value=-180, max_value=180),
                _c("traffic_source", pa.string(), allowed=TRAFFIC_SOURCES),
                _c("created_at", TIMESTAMP),
            ),
            time_column="created_at",
        ),
        TableSpec(
            "orders",
            "order_id",
            (
                _c("order_id", pa.int64()),
                _c("user_id", pa.int64()),
                _c("status", pa.string(), allowed=ORDER_STATUSES),
                _c("gender", pa.string(), allowed=GENDERS),
                _c("created_at", TIMESTAMP),
                _c("returned_at", TIMESTAMP, nullable=True),
                _c("shipped_at", TIMESTAMP, nullable=True),
                _c("delivered_at", TIMESTAMP, nullable=True),
                _c("num_of_item", pa.int64(), min_value=1),
            ),
            foreign_keys=(ForeignKey("user_id", "users", "id"),),
            time_column="created_at",
            lifecycle=_LIFECYCLE,
        ),
        TableSpec(
            "order_items",
            "id",
            (
                _c("id", pa.int64()),
                _c("order_id", pa.int64()),
                _c("user_id", pa.int64()),
                _c("product_id", pa.int64()),
                _c("inventory_item_id", pa.int64()),
                _c("status", pa.string(), allowed=ORDER_STATUSES),
                _c("created_at", TIMESTAMP),
                _c("shipped_at", TIMESTAMP, nullable=True),
                _c("delivered_at", TIMESTAMP, nullable=True),
                _c("returned_at", TIMESTAMP, nullable=True),
                _c("sale_price", pa.float64(), min_value=0),
            ),
            foreign_keys=(
                ForeignKey("order_id", "orders", "order_id"),
                ForeignKey("user_id", "users", "id"),
                ForeignKey("product_id", "products", "id"),
            ),
            time_column="created_at",
            lifecycle=_LIFECYCLE,
        ),
    )
}

# Dependency order: a table's foreign keys point only to tables listed before it.
TABLE_ORDER = ("distribution_centers", "products", "users", "orders", "order_items")

# (check, table, column, message, SQL selecting the failing rows) beyond keys, lifecycles and times
RELATION_CHECKS: tuple[tuple[str, str, str | None, str, str], ...] = (
    *(
        (
            "status_timestamps",
            name,
            "status",
            "status implies which timestamps exist (shipped: Shipped/Complete/Returned; "
            "delivered: Complete/Returned; returned: Returned only)",
            f"SELECT * FROM {name}_batch WHERE "
            "(shipped_at IS NOT NULL) <> (status IN ('Shipped', 'Complete', 'Returned')) "
            "OR (delivered_at IS NOT NULL) <> (status IN ('Complete', 'Returned')) "
            "OR (returned_at IS NOT NULL) <> (status = 'Returned')",
        )
        for name in ("orders", "order_items")
    ),
    (
        "items_per_order",
        "orders",
        "num_of_item",
        "num_of_item must equal the order's item count",
        "SELECT o.*, coalesce(i.n, 0) AS item_count FROM orders_batch o LEFT JOIN "
        "(SELECT order_id, count(*) AS n FROM order_items_all GROUP BY order_id) i "
        "USING (order_id) WHERE o.num_of_item <> coalesce(i.n, 0)",
    ),
    (
        "order_before_signup",
        "orders",
        "created_at",
        "an order cannot precede its user's signup",
        "SELECT o.* FROM orders_batch o JOIN users_all u ON u.id = o.user_id "
        "WHERE o.created_at < u.created_at",
    ),
    (
        "item_order_mismatch",
        "order_items",
        "user_id",
        "an item's user_id must equal its order's user_id",
        "SELECT i.* FROM order_items_batch i JOIN orders_all o USING (order_id) WHERE i.user_id <> o.user_id",
    ),
)
