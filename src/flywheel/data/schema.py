"""theLook eCommerce table schemas (column names and types as in the BigQuery public dataset).

One :class:`TableSpec` per table is the single source for the Arrow schema written to the lake, the
pandera schema used by validation and the keys used by the cross-table checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
ORDER_STATUSES = ("Complete", "Returned", "Shipped", "Processing", "Cancelled")
GENDERS = ("M", "F")
TRAFFIC_SOURCES = ("Search", "Organic", "Facebook", "Email", "Display")
DEPARTMENTS = ("Men", "Women")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: pa.DataType
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    target: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: str
    columns: tuple[ColumnSpec, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    time_column: str | None = None
    # Lifecycle timestamps that must not decrease, in order (created ≤ shipped ≤ delivered ≤ returned).
    lifecycle: tuple[str, ...] = field(default=())

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def loose_schema(self) -> pa.Schema:
        """The Arrow schema with every column nullable: what data is cast to before nulls are checked."""
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema_hash(self) -> str:
        text = ",".join(f"{c.name}:{c.type}:{c.nullable}" for c in self.columns)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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
