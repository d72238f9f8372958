"""DuckDB helpers shared by validation and the readers of the lake."""

from __future__ import annotations

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with UTC session time, so TIMESTAMPTZ values read back in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def scan(files: list[str]) -> str:
    """SQL reading the given Parquet files; the ``batch=<id>`` folders are not turned into a column."""
    return f"read_parquet({files!r}, hive_partitioning = false)"
