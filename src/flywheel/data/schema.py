"""Raw table specs: each use case describes its tables with these.

One :class:`TableSpec` per table is the single source for the Arrow schema written to the lake, the
pandera schema used by validation and the keys used by the cross-table checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")


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
