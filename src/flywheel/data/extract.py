"""Seed 003's templated extraction: a use case's SQL template run for one logical date ``ds`` on the
extraction source, keeping a rolling window of logical dates in the target table.

The source is DuckDB over the lake by default (a database file in the workdir holds the target; the
source tables are temporary views over the lake built from ``Extraction.sources``, so the file records
no path) or MySQL/MariaDB by configuration (``data.extract``), reached through SQLAlchemy and PyMySQL.
The same template runs unchanged on both. :func:`load_mysql_sources` seeds a MySQL source with the
rows the DuckDB views give.

A template's statements are separated by ``;``; whole-line ``--`` comments are dropped; ``{{ ds }}``
is the only placeholder and is replaced by a validated ISO date, never by caller text. The target keeps
each row's logical date in ``base_dt``; a run may leave no date older than ``window_days``. ``CREATE``
statements run first, each on its own (MySQL commits DDL implicitly, so it cannot share the
transaction); every other statement runs in one transaction, so a failure leaves the target as it was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from flywheel.config import ExtractConfig
from flywheel.data.duck import select_table
from flywheel.data.lake import Lake
from flywheel.errors import ConfigError, DataError
from flywheel.usecases.spec import Extraction, UseCase

_logger = logging.getLogger(__name__)

_DS_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


@dataclass(frozen=True)
class ExtractResult:
    """One extraction run: the target's rows for ``ds`` (sorted by every column, so both engines give
    the same order), how many rows left the window, and the window after the run (date → rows)."""

    ds: date
    source: str
    target: str
    rows: pa.Table
    rows_deleted: int
    window: dict[date, int]

    @property
    def rows_for_ds(self) -> int:
        return self.rows.num_rows

    @property
    def dates_in_window(self) -> int:
        return len(self.window)


class _Session(Protocol):
    """A connection to an extraction source."""

    def setup(self, statement: str) -> None:
        """Run ``statement`` (DDL) outside the transaction, committed."""

    def transaction(self) -> AbstractContextManager[None]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    def execute(self, statement: str) -> int:
        """Run one statement; the number of rows it changed."""

    def query(self, sql: str) -> pa.Table: ...


def parse_ds(value: date | str) -> date:
    """The logical date ``value`` (a date or ``YYYY-MM-DD``).

    Raises:
        DataError: ``value`` is not a calendar date.
    """
    if isinstance(value, datetime):  # a datetime is a date too, but renders with a time
        raise DataError(f"ds: {value!r} is a datetime; expected a date (YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if not _DS_FORMAT.fullmatch(text):
            raise ValueError("not in YYYY-MM-DD form")
        return date.fromisoformat(text)
    except ValueError:
        raise DataError(f"ds: {value!r} is not a date; expected YYYY-MM-DD, e.g. 2026-12-04") from None


def render(
    template: str, ds: date, name: str = "template", lookback_months: int = 1
) -> tuple[list[str], list[str]]:
    """The statements of ``template`` for ``ds``: (``CREATE`` statements, the transaction's statements).
    ``{{ ds }}`` becomes the date and ``{{ lookback_months }}`` the months of records each logical
    date extracts (seed 003: one), both validated values, never caller text.

    Raises:
        ConfigError: the template has another placeholder, or no statement.
    """
    if isinstance(lookback_months, bool) or not isinstance(lookback_months, int) or lookback_months < 1:
        raise ConfigError(f"data.extract.lookback_months: {lookback_months!r}; expected a whole number ≥ 1")
    values = {"ds": parse_ds(ds).isoformat(), "lookback_months": str(lookback_months)}
    body = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("--"))
    unknown = sorted({found for found in _PLACEHOLDER.findall(body) if found not in values})
    if unknown:
        raise ConfigError(
            f"{name}: unknown placeholder(s) {unknown}; only {{{{ ds }}}} and {{{{ lookback_months }}}} "
            "are substituted"
        )
    filled = _PLACEHOLDER.sub(lambda match: values[match.group(1)], body)
    statements = [s.strip() for s in filled.split(";")]
    statements = [s for s in statements if s]
    if not statements:
        raise ConfigError(f"{name}: no SQL statement")
    setup = [s for s in statements if _keyword(s) == "CREATE"]
    return setup, [s for s in statements if s not in setup]


def run_extraction(spec: UseCase, config: ExtractConfig, lake: Lake, ds: date | str) -> ExtractResult:
    """Run ``spec``'s extraction for the logical date ``ds`` on the configured source.

    Raises:
        ConfigError: the use case has no extraction, or the MySQL URL or driver is unusable.
        DataError: ``ds`` is not a date, the source is unreachable or lacks a source table, or a
            statement failed (the transaction was rolled back).
    """
    extraction = _extraction(spec)
    day = parse_ds(ds)
    setup, transaction = render(spec.sql_text(extraction.sql), day, extraction.sql, config.lookback_months)
    if config.source == "mysql":
        sessions = _mysql_session(_mysql_engine(config.url), extraction)
    else:
        sessions = _duckdb_session(lake, extraction)
    with sessions as session:
        for statement in setup:
            with _refusal_is_data_error(extraction.sql, statement):
                session.setup(statement)
        with session.transaction():
            deleted = _run_statements(session, transaction, extraction.sql)
            rows = session.query(f"SELECT * FROM {extraction.target} WHERE base_dt = DATE '{day}'")
            window = session.query(
                f"SELECT base_dt, COUNT(*) AS n FROM {extraction.target} GROUP BY base_dt"
            ).to_pydict()
            _check_window(extraction, day, window["base_dt"])
    result = ExtractResult(
        ds=day,
        source=config.source,
        target=extraction.target,
        rows=rows.sort_by([(name, "ascending") for name in rows.column_names]),
        rows_deleted=deleted,
        window=dict(sorted(zip(window["base_dt"], window["n"], strict=True))),
    )
    _logger.info(
        "extracted %d row(s) into %s for %s on %s (%d deleted, %d date(s) in the window)",
        result.rows_for_ds,
        result.target,
        day,
        config.source,
        result.rows_deleted,
        result.dates_in_window,
    )
    return result


def _run_statements(session: _Session, statements: list[str], name: str) -> int:
    """Run the transaction's statements; the rows its ``DELETE`` statements removed."""
    deleted = 0
    for statement in statements:
        with _refusal_is_data_error(name, statement):
            changed = session.execute(statement)
        if _keyword(statement) == "DELETE":
            deleted += changed
    return deleted


@contextmanager
def _refusal_is_data_error(name: str, statement: str) -> Iterator[None]:
    """A database's refusal of ``statement`` (a constraint, a missing column, a type) as a
    :class:`DataError` naming the template and the statement; the transaction around it rolls back."""
    try:
        yield
    except (duckdb.Error, sa.exc.DBAPIError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        shown = " ".join(statement.split())
        shown = shown if len(shown) <= 80 else shown[:79] + "…"
        raise DataError(f"{name}: `{shown}` failed, nothing was changed: {reason}") from None


def _check_window(extraction: Extraction, day: date, dates: list[date]) -> None:
    """Refuse (and so roll back) a run that leaves dates the use case's window has dropped: the
    template and ``Extraction.window_days`` disagree."""
    stale = sorted(d for d in dates if d <= day - timedelta(days=extraction.window_days))
    if stale:
        raise ConfigError(
            f"{extraction.sql}: after the run for {day}, {extraction.target} still holds {stale}, older "
            f"than the use case's window of {extraction.window_days} days; the template's DELETE and "
            "Extraction.window_days disagree"
        )


def _keyword(statement: str) -> str:
    return statement.split(None, 1)[0].upper()


def _extraction(spec: UseCase) -> Extraction:
    if spec.extraction is None:
        raise ConfigError(f"use case {spec.name} has no extraction (UseCase.extraction is not set)")
    names = [spec.extraction.target, *spec.extraction.sources]
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise ConfigError(f"use case {spec.name}: extraction table names {bad} are not SQL identifiers")
    return spec.extraction


# ---- DuckDB over the lake -----------------------------------------------------------------------
class _DuckSession:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def setup(self, statement: str) -> None:
        self.con.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def execute(self, statement: str) -> int:
        result = self.con.execute(statement)
        # DuckDB answers a data change with one row: how many rows it changed
        return int(result.fetchone()[0]) if _keyword(statement) in {"DELETE", "INSERT", "UPDATE"} else 0

    def query(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()


@contextmanager
def _duckdb_session(lake: Lake, extraction: Extraction) -> Iterator[_DuckSession]:
    path = lake.workdir.extract_db
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as error:
        raise DataError(
            f"{path}: cannot open the extraction database (another extraction running?): {error}"
        ) from None
    try:
        con.execute("SET TimeZone = 'UTC'")
        # temporary views: the database file keeps the target only, never a path into the lake
        for name, table in lake.tables.items():
            con.execute(f"CREATE TEMP VIEW {name} AS {select_table(table.arrow_schema, lake.files(name))}")
        for name, sql in extraction.sources.items():
            con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
        yield _DuckSession(con)
    finally:
        con.close()


def source_tables(spec: UseCase, lake: Lake) -> dict[str, pa.Table]:
    """The rows of each source table of ``spec``'s extraction, as DuckDB builds them from the lake."""
    extraction = _extraction(spec)
    con = lake.connect()
    try:
        return {name: con.sql(sql).to_arrow_table() for name, sql in extraction.sources.items()}
    finally:
        con.close()


# ---- MySQL / MariaDB ----------------------------------------------------------------------------
def _mysql_engine(url: str | None) -> sa.Engine:
    """A SQLAlchemy engine on ``url`` with the PyMySQL driver (``mysql://`` gets it implicitly)."""
    try:
        parsed = sa.engine.make_url(url or "")
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"data.extract.url: {url!r} is not a database URL; expected "
            "mysql+pymysql://user:password@host:port/database"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in {"mysql", "mariadb"} or driver not in {"", "pymysql"}:
        raise ConfigError(
            f"data.extract.url: {parsed.render_as_string()} is not a MySQL URL with the pymysql driver; "
            "expected mysql+pymysql://user:password@host:port/database"
        )
    if not parsed.database:
        raise ConfigError(f"data.extract.url: {parsed.render_as_string()} names no database")
    try:
        return sa.create_engine(parsed.set(drivername=f"{backend}+pymysql"), pool_pre_ping=True)
    except ImportError:
        raise ConfigError(
            "data.extract.source mysql needs PyMySQL: pip install 'flywheel-mlops[mysql]'"
        ) from None


@contextmanager
def _mysql_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection on ``engine``; an unreachable or refusing server is a :class:`DataError`."""
    where = engine.url.render_as_string()  # the password is masked
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError as error:
        reason = str(error.orig).splitlines()[0] if error.orig else str(error)
        raise DataError(f"data.extract.url: cannot connect to {where}: {reason}") from None
    try:
        yield connection
    finally:
        connection.close()
        engine.dispose()


class _MySqlSession:
    def __init__(self, connection: sa.Connection):
        self.connection = connection

    def setup(self, statement: str) -> None:
        self.connection.exec_driver_sql(statement)
        self.connection.commit()  # MySQL has committed the DDL already; this ends SQLAlchemy's autobegin

    def transaction(self) -> AbstractContextManager[None]:
        return self.connection.begin()

    def execute(self, statement: str) -> int:
        return max(self.connection.exec_driver_sql(statement).rowcount, 0)

    def query(self, sql: str) -> pa.Table:
        result = self.connection.exec_driver_sql(sql)
        return _arrow_from_mysql(result.cursor.description, result.fetchall())


@contextmanager
def _mysql_session(engine: sa.Engine, extraction: Extraction) -> Iterator[_MySqlSession]:
    with _mysql_connection(engine) as connection:
        missing = [name for name in extraction.sources if not sa.inspect(connection).has_table(name)]
        if missing:
            raise DataError(
                f"data.extract.url: {engine.url.database} has no source table(s) {missing}; load them "
                "from the lake with flywheel.data.extract.load_mysql_sources"
            )
        collation = connection.exec_driver_sql("SELECT @@collation_database").scalar()
        if not str(collation).endswith("_bin"):
            # the target's text keys would compare case-insensitively: ids differing only in case collide
            _logger.warning(
                "database %s has collation %s; create it with COLLATE utf8mb4_bin to compare keys as "
                "DuckDB does",
                engine.url.database,
                collation,
            )
        yield _MySqlSession(connection)


def _arrow_from_mysql(description: Any, rows: list[Any]) -> pa.Table:
    """Rows fetched by PyMySQL as an Arrow table typed from the result's column types (what DuckDB's
    Arrow output gives for the same SQL types)."""
    from pymysql.constants import FIELD_TYPE

    types = {
        **dict.fromkeys(
            (FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG, FIELD_TYPE.LONGLONG),
            pa.int64(),
        ),
        **dict.fromkeys((FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE), pa.float64()),
        **dict.fromkeys((FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE), pa.date32()),
        **dict.fromkeys((FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP), pa.timestamp("us")),
        # TEXT columns are reported as BLOB types; PyMySQL decodes them to str
        **dict.fromkeys(
            (
                FIELD_TYPE.VARCHAR,
                FIELD_TYPE.VAR_STRING,
                FIELD_TYPE.STRING,
                FIELD_TYPE.TINY_BLOB,
                FIELD_TYPE.BLOB,
                FIELD_TYPE.MEDIUM_BLOB,
                FIELD_TYPE.LONG_BLOB,
            ),
            pa.string(),
        ),
    }
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in description]
    return pa.table(
        {
            column[0]: pa.array(values, type=types.get(column[1]))
            for column, values in zip(description, columns, strict=True)
        }
    )


def load_mysql_sources(spec: UseCase, lake: Lake, url: str, chunk_rows: int = 5_000) -> dict[str, int]:
    """Create or replace the extraction's source tables in the MySQL database at ``url`` with the rows
    the DuckDB views give (what an operator runs to seed a MySQL feature store). Returns rows per table.

    Each table is filled under a scratch name and swapped in with one atomic ``RENAME TABLE``, so a
    failed load leaves the previous table in place. Strings get a binary collation (joins and keys
    compare as DuckDB does); columns that are a lake table's primary key or the entity's join key are
    indexed; NaN, which MySQL cannot store, is loaded as NULL.

    Raises:
        ConfigError: ``url`` is not a usable MySQL URL.
        DataError: the server is unreachable or refuses the load.
    """
    extraction = _extraction(spec)
    keys = {table.primary_key for table in spec.tables.values()} | {spec.entity.join_key}
    tables = source_tables(spec, lake)
    engine = _mysql_engine(url)
    loaded = {}
    with _mysql_connection(engine) as connection:
        for name in extraction.sources:
            table = _mysql_ready(tables[name], name)
            with _refusal_is_data_error("load_mysql_sources", f"loading {name} from the lake"):
                _replace_table(connection, name, table, keys, chunk_rows)
            loaded[name] = table.num_rows
            _logger.info("loaded %d row(s) into %s.%s", table.num_rows, engine.url.database, name)
    return loaded


def _replace_table(
    connection: sa.Connection, name: str, table: pa.Table, keys: set[str], chunk_rows: int
) -> None:
    scratch, replaced = f"{name}__loading", f"{name}__replaced"
    columns = [f"`{field.name}` {_mysql_type(field, table.column(field.name))}" for field in table.schema]
    indexes = [f"KEY (`{column}`)" for column in table.column_names if column in keys]
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS `{scratch}`, `{replaced}`")
    connection.exec_driver_sql(
        f"CREATE TABLE `{scratch}` ({', '.join(columns + indexes)}) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    insert = (
        f"INSERT INTO `{scratch}` ({', '.join(f'`{c}`' for c in table.column_names)}) "
        f"VALUES ({', '.join(['%s'] * table.num_columns)})"
    )
    for batch in table.to_batches(max_chunksize=chunk_rows):
        # PyMySQL sends one multi-row INSERT per chunk
        rows = list(zip(*(column.to_pylist() for column in batch.columns), strict=True))
        connection.exec_driver_sql(insert, rows)
        connection.commit()
    if sa.inspect(connection).has_table(name):
        connection.exec_driver_sql(f"RENAME TABLE `{name}` TO `{replaced}`, `{scratch}` TO `{name}`")
        connection.exec_driver_sql(f"DROP TABLE `{replaced}`")
    else:
        connection.exec_driver_sql(f"RENAME TABLE `{scratch}` TO `{name}`")
    connection.commit()


def _mysql_ready(table: pa.Table, name: str) -> pa.Table:
    """``table`` with NaN as null and timestamps as naive UTC (MySQL's DATETIME has no zone)."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_floating(field.type):
            nans = pc.sum(pc.is_nan(column)).as_py() or 0
            if nans:
                _logger.warning("%s.%s: %d NaN value(s) loaded as NULL", name, field.name, nans)
                column = pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column)
        elif pa.types.is_timestamp(field.type) and field.type.tz is not None:
            column = column.cast(pa.timestamp(field.type.unit))
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _mysql_type(field: pa.Field, column: pa.ChunkedArray) -> str:
    kind = field.type
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_floating(kind):
        return "DOUBLE"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_timestamp(kind):
        return "DATETIME(6)"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        longest = pc.max(pc.utf8_length(column)).as_py() or 0
        return f"VARCHAR({max(longest, 64)})" if longest <= 1024 else "TEXT"
    raise DataError(f"source column {field.name} has type {kind}, which is not loaded into MySQL")
