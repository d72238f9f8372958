"""DuckDB helpers shared by validation and the readers of the lake."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from flywheel.data.schema import TIMESTAMP, TableSpec

DUCK_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR", TIMESTAMP: "TIMESTAMPTZ"}


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with UTC session time, so TIMESTAMPTZ values read back in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def scan(files: list[str]) -> str:
    """SQL reading the given Parquet files; the ``batch=<id>`` folders are not turned into a column."""
    return f"read_parquet({files!r}, hive_partitioning = false)"


def select_table(spec: TableSpec, files: list[str]) -> str:
    """SQL selecting a raw table from its files (an empty result with its columns when there are none)."""
    if files:
        return f"SELECT * FROM {scan(files)}"
    nulls = ", ".join(f"NULL::{DUCK_TYPES[c.type]} AS {c.name}" for c in spec.columns)
    return f"SELECT * FROM (SELECT {nulls}) WHERE false"
