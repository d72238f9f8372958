"""The SQL engine layer's own rules: timestamps both engines read as UTC, an empty lake table with
its columns, Spark's Arrow output in DuckDB's types, and no Spark loaded by the CLI until it runs."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa

from flywheel.data.engine import DuckEngine, timestamp_literal, utc
from flywheel.data.schema import TIMESTAMP


def test_a_timestamp_literal_is_the_same_utc_moment_from_any_zone() -> None:
    moment = datetime(2024, 3, 1, 12, 30, 15, 250, tzinfo=timezone(timedelta(hours=9)))
    assert timestamp_literal(moment) == "TIMESTAMP '2024-03-01 03:30:15.000250'"
    (read,) = DuckEngine().row(f"SELECT CAST({timestamp_literal(moment)} AS TIMESTAMPTZ)")
    assert read == moment.astimezone(UTC)


def test_an_empty_table_keeps_its_columns_and_types() -> None:
    engine = DuckEngine()
    schema = pa.schema([("id", pa.int64()), ("at", TIMESTAMP), ("name", pa.string()), ("x", pa.float64())])
    engine.register_files("t", [], schema)
    assert engine.query("SELECT * FROM t").schema == schema


def test_duckdb_has_the_unix_seconds_both_engines_spell_alike() -> None:
    (seconds,) = DuckEngine().row("SELECT unix_seconds(TIMESTAMP '1970-01-02 00:00:01.999')")
    assert seconds == 86_401  # floored, as Spark's unix_seconds truncates


def test_spark_output_is_normalized_to_duckdb_types() -> None:
    table = pa.table(
        {
            "ts": pa.array([0], pa.timestamp("us", "Etc/UTC")),
            "s": pa.array(["a"], pa.large_string()),
        },
        schema=pa.schema(
            [pa.field("ts", pa.timestamp("us", "Etc/UTC"), nullable=False), ("s", pa.large_string())]
        ),
    )
    assert utc(table).schema == pa.schema([("ts", TIMESTAMP), ("s", pa.string())])


def test_the_cli_loads_no_spark_until_the_spark_engine_runs() -> None:
    """pandera imports pandas-on-Spark whenever PySpark is installed (half a second on every command);
    Flywheel's validation imports pandera without it, and pyspark.pandas stays importable after."""
    probe = (
        "import sys; import flywheel.cli.main; import flywheel.data.validation;"
        "print('pyspark' in sys.modules); import importlib.util;"
        "spec = importlib.util.find_spec;"
        "print(spec('pyspark') is None or spec('pyspark.pandas') is not None)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stderr[-2000:]
