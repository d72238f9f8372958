"""Seed 003's extraction on a real MariaDB equals the one on DuckDB over the lake: the same template,
the same source rows (loaded from the lake), the same rows per date, window and deletions."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa

from flywheel.config import ExtractConfig
from flywheel.data.extract import load_mysql_sources, run_extraction, source_tables
from flywheel.errors import DataError
from tests.servers import mariadb_server
from tests.unit.test_extract import (
    DS,
    DUCKDB,
    EXTRACTION,
    SPEC,
    credit_lake,
    credit_records,
    credit_use_case,
    generated_credit_lake,
)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mariadb_server(tmp_path_factory.mktemp("mariadb")) as url:
        yield url


@pytest.fixture
def url(mariadb: str) -> str:
    """The server's database, emptied: each test starts without source or target tables."""
    engine = sa.create_engine(mariadb)
    with engine.begin() as connection:
        for name in sa.inspect(connection).get_table_names():
            connection.exec_driver_sql(f"DROP TABLE `{name}`")
    engine.dispose()
    return mariadb


def mysql_table(url: str, name: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT * FROM `{name}`").fetchall()
    engine.dispose()
    return sorted(tuple(row) for row in rows)


def duckdb_target(lake) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(lake.workdir.extract_db), read_only=True)
    try:
        return sorted(con.execute(f"SELECT * FROM {EXTRACTION.target}").fetchall())
    finally:
        con.close()


def test_mariadb_extraction_equals_duckdb_date_by_date(url: str, tmp_path) -> None:
    lake = credit_lake(tmp_path / "wd", credit_records(3000, DS - timedelta(days=80), 90))
    mysql = ExtractConfig(source="mysql", url=url)
    with pytest.raises(
        DataError, match=r"has no source table\(s\) \['credit_score', 'credit_score_features'\]"
    ):
        run_extraction(SPEC, mysql, lake, DS)

    loaded = load_mysql_sources(SPEC, lake, url, chunk_rows=700)
    sources = source_tables(SPEC, lake)
    assert (
        loaded
        == {name: table.num_rows for name, table in sources.items()}
        == {
            "credit_score": 3000,
            "credit_score_features": 3000,
        }
    )
    for name, table in sources.items():
        assert mysql_table(url, name) == sorted(tuple(row.values()) for row in table.to_pylist())

    for day in [
        DS,
        DS + timedelta(days=1),
        DS + timedelta(days=2),
        DS + timedelta(days=2),
        DS + timedelta(days=8),
    ]:
        expected = run_extraction(SPEC, DUCKDB, lake, day)
        got = run_extraction(SPEC, mysql, lake, day)
        assert got.rows.schema == expected.rows.schema
        assert got.rows.equals(expected.rows), day  # values, nulls, order
        assert got.rows_for_ds == expected.rows_for_ds > 500
        assert (got.rows_deleted, got.window) == (expected.rows_deleted, expected.window)
        assert mysql_table(url, EXTRACTION.target) == duckdb_target(lake)
    # the re-run replaced ds's rows, and ds + 8 pushed the first two dates out of the window
    assert list(got.window) == [DS + timedelta(days=2), DS + timedelta(days=8)]
    assert got.rows.column("monthly_inhand_salary").null_count > 0


def test_a_failed_mariadb_run_leaves_the_target_as_it_was(url: str, tmp_path) -> None:
    lake = credit_lake(tmp_path / "wd", credit_records(400, DS - timedelta(days=40), 50))
    mysql = ExtractConfig(source="mysql", url=url)
    load_mysql_sources(SPEC, lake, url)
    run_extraction(SPEC, mysql, lake, DS)
    before = mysql_table(url, EXTRACTION.target)
    # features with every record twice: the INSERT breaks the target's key after the DELETE ran
    doubled = {**EXTRACTION.sources}
    doubled["credit_score_features"] += f" UNION ALL {doubled['credit_score_features']}"
    broken = dataclasses.replace(SPEC, extraction=dataclasses.replace(EXTRACTION, sources=doubled))
    load_mysql_sources(broken, lake, url)  # replaces the loaded table

    with pytest.raises(
        DataError, match=r"`INSERT INTO credit_score_features_target .*` failed.*Duplicate entry"
    ):
        run_extraction(broken, mysql, lake, DS)
    assert mysql_table(url, EXTRACTION.target) == before
    assert mysql_table(url, "credit_score_features") != []
    assert not {"credit_score_features__loading", "credit_score_features__replaced"} & set(
        sa.inspect(sa.create_engine(url)).get_table_names()
    )


def test_nan_all_null_columns_and_case_only_keys(url: str, tmp_path) -> None:
    records = credit_records(50, DS - timedelta(days=10), 10)
    salary = records.column("monthly_inhand_salary").to_pylist()
    salary[0] = float("nan")  # MySQL stores no NaN: it is loaded as NULL
    records = _replace(records, "monthly_inhand_salary", pa.array(salary, pa.float64()))
    records = _replace(records, "type_of_loan", pa.nulls(50, pa.string()))  # a TEXT column of nulls
    lake = credit_lake(tmp_path / "wd", records)
    load_mysql_sources(SPEC, lake, url)
    rows = {row[0]: row for row in mysql_table(url, "credit_score_features")}
    salary_at = source_tables(SPEC, lake)["credit_score_features"].column_names.index("monthly_inhand_salary")
    assert rows[records.column("id")[0].as_py()][salary_at] is None
    assert len(rows) == 50  # ids differing only in case are distinct keys

    got = run_extraction(SPEC, ExtractConfig(source="mysql", url=url), lake, DS)
    expected = run_extraction(SPEC, DUCKDB, lake, DS)
    assert got.rows.schema == expected.rows.schema  # typed from the result's columns, not the values
    assert got.rows.column("type_of_loan").null_count == got.rows_for_ds > 0


def _replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def test_the_credit_use_cases_generated_lake_extracts_alike(url: str, tmp_path) -> None:
    spec = credit_use_case()
    lake = generated_credit_lake(tmp_path / "wd", spec)
    mysql = ExtractConfig(source="mysql", url=url)
    load_mysql_sources(spec, lake, url)
    for day in [date(2024, 3, 14), date(2024, 3, 15), date(2024, 3, 15)]:
        expected = run_extraction(spec, DUCKDB, lake, day)
        got = run_extraction(spec, mysql, lake, day)
        assert got.rows.equals(expected.rows) and got.rows_for_ds == 300, day
        assert (got.rows_deleted, got.window) == (expected.rows_deleted, expected.window)


def test_the_pipelines_extract_step_trains_on_the_same_rows_from_mariadb(url: str, tmp_path) -> None:
    """``data.extract.source: mysql``: the pipeline's ``extract`` step reads the MariaDB feature store
    and selects the same training rows as on DuckDB over the lake."""
    import pyarrow.parquet as pq

    from flywheel.config import apply_overrides, default_config
    from flywheel.data import ops
    from flywheel.data.lake import Lake
    from flywheel.features import ops as feature_ops
    from flywheel.pipeline.context import StepContext
    from flywheel.pipeline.steps import extract
    from flywheel.workdir import Workdir

    config = default_config(
        "credit",
        **{
            "data.generator.customers": 300,
            "data.generator.start": date(2024, 1, 1),
            "data.generator.end": date(2024, 4, 1),
            "data.extract.lookback_months": 2,
        },
    )
    workdir = Workdir.at(tmp_path / "wd")
    ops.generate(config, workdir)
    _, labels = feature_ops.build(config, workdir)
    load_mysql_sources(config.spec, Lake(workdir, config.spec), url)
    day = date(2024, 3, 15)
    on_duckdb = extract.run(StepContext(config, workdir, None, day), str(labels.path))
    expected = pq.read_table(on_duckdb["labels"])
    mysql = apply_overrides(config, {"data.extract.source": "mysql", "data.extract.url": url})
    on_mysql = extract.run(StepContext(mysql, workdir, None, day), str(labels.path))
    assert (on_duckdb["source"], on_mysql["source"]) == ("duckdb", "mysql")
    assert on_mysql["rows"] == on_duckdb["rows"] == "600"  # two months of 300 customers' statements
    assert pq.read_table(on_mysql["labels"]).equals(expected)
