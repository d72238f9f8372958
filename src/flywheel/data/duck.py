"""DuckDB helpers shared by validation and the readers of the lake."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from flywheel.data.schema import TIMESTAMP

DUCK_TYPES = {
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    TIMESTAMP: "TIMESTAMPTZ",
}


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with UTC session time, so TIMESTAMPTZ values read back in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def scan(files: list[str]) -> str:
    """SQL reading the given Parquet files; the ``batch=<id>`` folders are not turned into a column."""
    return f"read_parquet({files!r}, hive_partitioning = false)"


def select_table(schema: pa.Schema, files: list[str]) -> str:
    """SQL selecting a table from its files (an empty result with its columns when there are none)."""
    if files:
        return f"SELECT * FROM {scan(files)}"
    nulls = ", ".join(f"CAST(NULL AS {DUCK_TYPES[f.type]}) AS {f.name}" for f in schema)
    return f"SELECT * FROM (SELECT {nulls}) WHERE false"
