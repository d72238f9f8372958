"""SQL engines: the use cases' SQL on DuckDB (embedded, the default) or Spark (``features.engine:
spark``, a local or cluster session), with the same results.

One SQL text runs on both engines, nothing is transpiled: the use cases' SQL is written in the part
of the dialect both accept with the same semantics (elapsed time as ``unix_seconds`` differences —
DuckDB gets the macro here —, DOUBLE arithmetic from CASTs instead of decimal literals, ``max_by``,
explicit ``NULLS`` ordering; tests/unit/test_sql_dialect.py lints it, and tests/integration/
test_spark_parity.py runs every use case on both). An engine holds named tables — the lake's
tables over their Parquet files (an Iceberg lake's are the data files of the snapshot the manifest
names), and small Arrow tables such as the snapshot dates — and answers a query with an Arrow table
whose timestamps are UTC.

Spark runs one session per process, created on first use from the ``spark`` settings; its tables
are the session's temporary views, so one engine is used at a time.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from flywheel.data.duck import connect, select_table
from flywheel.errors import ConfigError, DataError

if TYPE_CHECKING:
    from flywheel.config import FlywheelConfig, SparkConfig
    from flywheel.data.lake import Lake
    from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


def timestamp_literal(moment: datetime) -> str:
    """A timestamp literal both engines read as this moment (their sessions run in UTC; a naive
    ``moment`` is taken as UTC, as the lake's times are)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"TIMESTAMP '{moment.replace(tzinfo=None).isoformat(sep=' ')}'"


MAP_BATCH_ROWS = 100_000


def sections(text: str) -> tuple[list[tuple[str, str]], str]:
    """A SQL file as its ``-- @prep NAME`` SELECTs (each computed once as the table NAME, in order)
    and its main SELECT (after ``-- @chunk``; the whole text when there are no sections)."""
    if not re.search(r"^-- @chunk[ \t]*$", text, flags=re.M):
        return [], text
    parts = re.split(r"^-- @(prep \w+|chunk)[ \t]*$", text, flags=re.M)
    preps, main = [], ""
    for tag, body in zip(parts[1::2], parts[2::2], strict=True):
        if tag == "chunk":
            main = body
        else:
            preps.append((tag.split()[1], body.strip()))
    return preps, main


class Engine:
    """Named tables and queries over them; see the module docstring."""

    name = ""

    def register_files(self, name: str, files: list[str], schema: pa.Schema) -> None:
        """``name`` reads the Parquet ``files`` (an empty table of ``schema`` when there are none)."""
        raise NotImplementedError

    def register_arrow(self, name: str, table: pa.Table) -> None:
        raise NotImplementedError

    def query(self, sql: str, source: str = "a query") -> pa.Table:
        """The rows of ``sql``; an error names ``source`` (e.g. the SQL file)."""
        raise NotImplementedError

    def prepare(self, name: str, sql: str, source: str = "a query") -> None:
        """``name`` holds the rows of ``sql``, computed now (once, for the queries that follow)."""
        raise NotImplementedError

    def map_batches(self, sql: str, function: Callable[[Any], Any], schema: pa.Schema) -> pa.Table:
        """``function`` (a pandas DataFrame of some of the query's rows → a DataFrame of ``schema``)
        applied to all of the query's rows, in batches; the results in no set order."""
        raise NotImplementedError

    def row(self, sql: str) -> tuple[Any, ...]:
        """The first row of a query (timestamps as UTC datetimes)."""
        table = self.query(sql)
        return tuple(table.column(i)[0].as_py() for i in range(table.num_columns))


class DuckEngine(Engine):
    """An in-memory DuckDB connection (``con``) in UTC, spilling to ``temp_dir`` past ``memory_limit``."""

    name = "duckdb"

    def __init__(self, memory_limit: str | None = None, temp_dir: Path | None = None) -> None:
        self.con = connect()
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if temp_dir is not None:
            self.con.execute(f"SET temp_directory = '{temp_dir}'")
        self.con.execute("CREATE OR REPLACE TEMP MACRO unix_seconds(ts) AS CAST(floor(epoch(ts)) AS BIGINT)")

    def register_files(self, name: str, files: list[str], schema: pa.Schema) -> None:
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {select_table(schema, files)}")

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def query(self, sql: str, source: str = "a query") -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    def prepare(self, name: str, sql: str, source: str = "a query") -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def map_batches(self, sql: str, function: Callable[[Any], Any], schema: pa.Schema) -> pa.Table:
        reader = self.con.sql(sql).fetch_record_batch(MAP_BATCH_ROWS)
        parts = [
            pa.Table.from_pandas(function(batch.to_pandas()), schema=schema, preserve_index=False)
            for batch in reader
        ]
        return pa.concat_tables(parts) if parts else schema.empty_table()


class SparkEngine(Engine):
    """Spark SQL on the process's session (see :func:`spark_session`)."""

    name = "spark"

    def __init__(self, settings: SparkConfig) -> None:
        self.spark = spark_session(settings)

    def register_files(self, name: str, files: list[str], schema: pa.Schema) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        if files:
            frame = self.spark.read.schema(from_arrow_schema(schema)).parquet(*files)
        else:
            frame = self.spark.createDataFrame(schema.empty_table())
        frame.createOrReplaceTempView(name)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def query(self, sql: str, source: str = "a query") -> pa.Table:
        with _spark_errors(source):
            return utc(self.spark.sql(sql).toArrow())

    def prepare(self, name: str, sql: str, source: str = "a query") -> None:
        """Cached on the executors (what ``name`` held before is released)."""
        with _spark_errors(source):
            frame = self.spark.sql(sql).cache()
            frame.count()  # computed now, not by the first query that reads it
        previous = _PREPARED.pop(name, None)
        if previous is not None:
            previous.unpersist()
        frame.createOrReplaceTempView(name)
        _PREPARED[name] = frame

    def map_batches(self, sql: str, function: Callable[[Any], Any], schema: pa.Schema) -> pa.Table:
        """On the executors, in ``mapInPandas`` (``function`` and what it holds are pickled to them)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        def batches(frames: Iterator[Any]) -> Iterator[Any]:
            for frame in frames:
                yield function(frame)

        with _spark_errors("the batch scoring"):
            mapped = self.spark.sql(sql).mapInPandas(batches, from_arrow_schema(schema))
            return utc(mapped.toArrow()).cast(schema)


@contextmanager
def _spark_errors(source: str) -> Iterator[None]:
    """Spark's errors as a DataError naming ``source`` and the reason's first line: its own
    (analysis, parse, runtime, with the error class) and the JVM's (e.g. a result over
    ``spark.driver.maxResultSize``: lower ``spark.chunk_dates`` or raise the setting)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JJavaError) as exc:
        text = str(exc).strip()
        if isinstance(exc, Py4JJavaError):  # the root cause says why (a wrapper says "awaitResult")
            cause = exc.java_exception
            while cause.getCause() is not None:
                cause = cause.getCause()
            text = str(cause.toString()).strip()
        raise DataError(f"Spark could not run {source}: {text.splitlines()[0][:500]}") from exc


def utc(table: pa.Table) -> pa.Table:
    """Spark's Arrow output as DuckDB gives it: timestamps in UTC, strings as ``string``, every
    column nullable (Spark marks what it proves non-null)."""
    fields = []
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            field = field.with_type(pa.timestamp("us", "UTC"))
        elif pa.types.is_large_string(field.type):
            field = field.with_type(pa.string())
        fields.append(field.with_nullable(True))
    return table.cast(pa.schema(fields))


_SESSION: Any = None
_PREPARED: dict[str, Any] = {}  # SparkEngine.prepare's cached frames by name
_SETTINGS: Any = None


def spark_session(settings: SparkConfig) -> Any:
    """The process's SparkSession, started on first use: ``settings.master`` (``local[*]`` runs in
    this process's JVM on 127.0.0.1), UTC, ANSI double-quoted identifiers, ``settings.conf`` last."""
    global _SESSION, _SETTINGS
    if _SESSION is not None:
        if settings != _SETTINGS:
            _logger.warning("the Spark session of this process keeps its first settings: %s", _SETTINGS)
        return _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "features.engine: spark needs PySpark: pip install 'flywheel[spark]' (and a Java 17 runtime)"
        ) from exc
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError(
            "features.engine: spark needs a Java 17 runtime (apt-get install -y openjdk-17-jre-headless, "
            "or set JAVA_HOME)"
        )
    local = settings.master.startswith("local")
    if local:  # the workers score with this interpreter (a cluster's executors bring their own)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    warehouse = tempfile.mkdtemp(prefix="flywheel-spark-warehouse-")  # Spark's; Flywheel keeps no table
    atexit.register(shutil.rmtree, warehouse, True)
    conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "true",
        "spark.sql.ansi.doubleQuotedIdentifiers": "true",  # "default" is a column, as in DuckDB
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.warehouse.dir": warehouse,
        "spark.driver.memory": settings.driver_memory,
        **(
            {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.sql.shuffle.partitions": str(max(2, os.cpu_count() or 2)),
            }
            if local
            else {}
        ),
        **settings.conf,
    }
    builder = SparkSession.builder.master(settings.master).appName("flywheel")
    for key, value in conf.items():
        builder = builder.config(key, value)
    _SESSION, _SETTINGS = builder.getOrCreate(), settings
    _SESSION.sparkContext.setLogLevel("ERROR")
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)  # query() raises it in a line
    return _SESSION


def open_engine(config: FlywheelConfig, workdir: Workdir, lake: Lake | None = None) -> Engine:
    """The configured engine (``features.engine``): DuckDB with ``features.memory_limit``, spilling
    under the workdir, or Spark; with the ``lake``'s raw tables when given."""
    if config.features.engine == "spark":
        engine: Engine = SparkEngine(config.spark)
    else:
        engine = DuckEngine(config.features.memory_limit, workdir.root / ".duckdb_tmp")
    return lake.engine(engine) if lake else engine
