"""Seed 003's templated extraction on DuckDB over the lake: the month up to ds joined with its
features, a window of 7 logical dates, idempotent re-runs, validated dates, all-or-nothing runs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import flywheel
from flywheel.config import ExtractConfig
from flywheel.data.batch import Batch
from flywheel.data.extract import parse_ds, render, run_extraction, source_tables
from flywheel.data.lake import Lake
from flywheel.data.schema import TIMESTAMP, ColumnSpec, TableSpec
from flywheel.errors import ConfigError, DataError
from flywheel.usecases.spec import Entity, Extraction, UseCase
from flywheel.workdir import Workdir
from tests.servers import free_port
from tests.usecase_toy import USE_CASE as TOY

DS = date(2026, 12, 4)
DUCKDB = ExtractConfig()
FEATURES = {  # the credit lake table's attributes, as the other use case's table spec shapes them
    "age": pa.int64(),
    "occupation": pa.string(),
    "annual_income": pa.float64(),
    "monthly_inhand_salary": pa.float64(),
    "num_bank_accounts": pa.int64(),
    "num_credit_card": pa.int64(),
    "interest_rate": pa.int64(),
    "num_of_loan": pa.int64(),
    "type_of_loan": pa.string(),
    "delay_from_due_date": pa.int64(),
    "num_of_delayed_payment": pa.int64(),
    "changed_credit_limit": pa.float64(),
    "num_credit_inquiries": pa.int64(),
    "credit_mix": pa.string(),
    "outstanding_debt": pa.float64(),
    "credit_utilization_ratio": pa.float64(),
    "credit_history_months": pa.int64(),
    "payment_of_min_amount": pa.string(),
    "total_emi_per_month": pa.float64(),
    "amount_invested_monthly": pa.float64(),
    "payment_behaviour": pa.string(),
    "monthly_balance": pa.float64(),
}
NULLABLE = {"occupation", "monthly_inhand_salary", "type_of_loan", "num_of_delayed_payment", "credit_mix"}
CREDIT_RECORDS = TableSpec(
    "credit_records",
    "id",
    (
        ColumnSpec("id", pa.string()),
        ColumnSpec("customer_id", pa.string()),
        ColumnSpec("record_date", TIMESTAMP),
        ColumnSpec("ssn_hash", pa.string()),
        *(ColumnSpec(name, kind, nullable=name in NULLABLE) for name, kind in FEATURES.items()),
        ColumnSpec("credit_score", pa.string(), allowed=("Good", "Standard", "Poor")),
    ),
    time_column="record_date",
)
EXTRACTION = Extraction(
    target="credit_score_features_target",
    sql="credit_score_features_target.sql",
    sources={
        "credit_score": "SELECT id, customer_id, CAST(record_date AS DATE) AS date, credit_score "
        "FROM credit_records",
        "credit_score_features": f"SELECT id, customer_id, {', '.join(FEATURES)} FROM credit_records",
    },
    window_days=7,
)
TEMPLATES = Path(flywheel.__file__).parent / "usecases" / "credit" / "sql"


@dataclasses.dataclass(frozen=True, eq=False)
class _CreditExtractUseCase(UseCase):
    """Reads the credit template from the source tree, so these tests do not depend on the credit
    package's own modules importing."""

    def sql_text(self, name: str) -> str:
        return (TEMPLATES / name).read_text()


# a use case carrying only what the extraction reads: the credit table and the template
SPEC = _CreditExtractUseCase(
    **{
        **{field.name: getattr(TOY, field.name) for field in dataclasses.fields(TOY)},
        "name": "credit_extract_test",
        "tables": {"credit_records": CREDIT_RECORDS},
        "table_order": ("credit_records",),
        "relation_checks": (),
        "entity": Entity("customer", "customer_id", "A credit customer.", dtype="string"),
        "extraction": EXTRACTION,
    }
)


def credit_records(n: int, start: date, days: int, seed: int = 3) -> pa.Table:
    """``n`` records spread over ``days`` days from ``start`` (times of day included), with nulls,
    mixed-case ids (a case-insensitive engine would confuse them) and floats of full precision."""
    rng = np.random.default_rng(seed)
    midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
    seconds = rng.integers(0, days * 86_400, n)
    seconds[: min(n, 20)] = np.arange(min(n, 20)) * 86_400  # some records exactly at midnight
    columns: dict[str, list] = {
        "id": [f"0x{i // 2:04x}{'Aa'[i % 2]}" for i in range(n)],  # pairs differing only in case
        "customer_id": [f"CUS_0x{i // 2 % (n // 6 + 1):03x}{'Aa'[i % 2]}" for i in range(n)],
        "record_date": [midnight + timedelta(seconds=int(s)) for s in seconds],
        "ssn_hash": [f"hash-{i}" for i in range(n)],
    }
    for name, kind in FEATURES.items():
        if kind == pa.string():
            values = [f"{name}-{v}" for v in rng.integers(0, 4, n)]
        elif kind == pa.int64():
            values = [int(v) for v in rng.integers(0, 60, n)]
        else:
            values = [float(v) for v in rng.normal(1_000, 300, n)]
        if name in NULLABLE:
            values = [None if rng.random() < 0.15 else v for v in values]
        columns[name] = values
    columns["credit_score"] = [("Good", "Standard", "Poor")[v] for v in rng.integers(0, 3, n)]
    return pa.table(columns, schema=CREDIT_RECORDS.arrow_schema)


def credit_lake(root, records: pa.Table, spec: UseCase = SPEC) -> Lake:
    """``records`` committed to a fresh lake through its validation."""
    lake = Lake(Workdir.at(root), spec)
    times = records.column("record_date").to_pylist()
    batch = Batch(
        "credit-1", "ingest", min(times), max(times) + timedelta(days=1), {"credit_records": records}
    )
    lake.commit(batch)
    return lake


def expected_rows(records: pa.Table, ds: date) -> list[dict]:
    """The extraction's answer computed in Python: each record dated in (ds − 1 month, ds], with
    its features and score, sorted as the result is."""
    last_month = ds.replace(day=1) - timedelta(days=1)
    first = last_month.replace(day=min(ds.day, last_month.day))  # ds − 1 month, clamped as SQL does
    rows = []
    for record in records.to_pylist():
        day = record["record_date"].astimezone(UTC).date()
        if first < day <= ds:
            rows.append(
                {
                    "base_dt": ds,
                    "id": record["id"],
                    "customer_id": record["customer_id"],
                    "date": day,
                    **{name: record[name] for name in FEATURES},
                    "credit_score": record["credit_score"],
                }
            )
    return sorted(rows, key=lambda row: row["id"])


def target_rows(lake: Lake) -> list[tuple]:
    con = duckdb.connect(str(lake.workdir.extract_db), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {EXTRACTION.target} ORDER BY base_dt, id").fetchall()
    finally:
        con.close()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return credit_lake(tmp_path / "wd", credit_records(600, DS - timedelta(days=60), 70))


def test_rows_for_ds_are_the_month_up_to_ds_joined_with_features(lake: Lake) -> None:
    records = lake.read("credit_records")
    result = run_extraction(SPEC, DUCKDB, lake, DS)

    assert result.rows.to_pylist() == expected_rows(records, DS)
    assert result.rows_for_ds == len(expected_rows(records, DS)) > 100
    assert "ssn_hash" not in result.rows.column_names and "record_date" not in result.rows.column_names
    assert result.rows.schema.field("date").type == pa.date32()
    assert result.rows.column("monthly_inhand_salary").null_count > 0  # nulls pass through
    assert result.window == {DS: result.rows_for_ds} and result.rows_deleted == 0


def test_the_month_boundaries_are_half_open(lake: Lake) -> None:
    result = run_extraction(SPEC, DUCKDB, lake, DS)
    dates = set(result.rows.column("date").to_pylist())
    assert min(dates) == date(2026, 11, 5) and max(dates) == DS  # 11-04 is out, ds itself is in


def test_the_window_keeps_seven_logical_dates(lake: Lake) -> None:
    days = [DS + timedelta(days=k) for k in range(10)]
    results = [run_extraction(SPEC, DUCKDB, lake, day) for day in days]

    for k, result in enumerate(results):
        assert list(result.window) == days[max(0, k - 6) : k + 1]
        assert result.window[days[k]] == result.rows_for_ds
    # the 8th date pushes the 1st out: its rows are the ones deleted
    assert results[7].rows_deleted == results[0].rows_for_ds
    assert sum(results[-1].window.values()) == len(target_rows(lake))


def test_a_rerun_of_the_same_date_replaces_its_rows(lake: Lake) -> None:
    first = run_extraction(SPEC, DUCKDB, lake, DS - timedelta(days=1))
    once = run_extraction(SPEC, DUCKDB, lake, DS)
    before = target_rows(lake)
    again = run_extraction(SPEC, DUCKDB, lake, DS)

    assert again.rows.equals(once.rows)
    assert again.rows_deleted == once.rows_for_ds  # its own rows, replaced
    assert again.window == once.window == {DS - timedelta(days=1): first.rows_for_ds, DS: once.rows_for_ds}
    assert target_rows(lake) == before
    keys = [(row[0], row[1]) for row in before]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    "ds",
    [
        "2026-13-01",
        "2026-02-30",
        "20261204",
        "",
        "2026-12-04'; DROP TABLE credit_score; --",
        datetime(2026, 12, 4),
    ],
)
def test_a_ds_that_is_not_a_date_is_refused_before_any_sql(lake: Lake, ds) -> None:
    with pytest.raises(DataError, match=r"ds: .*expected (YYYY-MM-DD|a date)"):
        run_extraction(SPEC, DUCKDB, lake, ds)
    assert not lake.workdir.extract_db.exists()


def test_a_failing_statement_leaves_the_target_as_it_was(tmp_path) -> None:
    lake = credit_lake(tmp_path / "wd", credit_records(300, DS - timedelta(days=50), 60))
    for k in range(7):
        run_extraction(SPEC, DUCKDB, lake, DS + timedelta(days=k))
    before = target_rows(lake)
    # features with every record twice: the INSERT breaks the target's key after the DELETE ran
    doubled = {**EXTRACTION.sources}
    doubled["credit_score_features"] = (
        f"{doubled['credit_score_features']} UNION ALL {doubled['credit_score_features']}"
    )
    broken = dataclasses.replace(SPEC, extraction=dataclasses.replace(EXTRACTION, sources=doubled))

    with pytest.raises(DataError, match=r"credit_score_features_target.sql: `INSERT INTO .*` failed"):
        run_extraction(broken, DUCKDB, lake, DS + timedelta(days=7))
    assert target_rows(lake) == before


def test_a_template_keeping_dates_past_the_window_is_refused(lake: Lake) -> None:
    narrow = dataclasses.replace(SPEC, extraction=dataclasses.replace(EXTRACTION, window_days=3))
    for k in range(3):
        run_extraction(narrow, DUCKDB, lake, DS + timedelta(days=k))
    before = target_rows(lake)
    with pytest.raises(ConfigError, match=r"window of 3 days; the template's DELETE and .* disagree"):
        run_extraction(narrow, DUCKDB, lake, DS + timedelta(days=3))
    assert target_rows(lake) == before


def test_the_database_file_records_no_path_into_the_workdir(lake: Lake) -> None:
    run_extraction(SPEC, DUCKDB, lake, DS)
    assert str(lake.workdir.root).encode() not in lake.workdir.extract_db.read_bytes()


def test_render_substitutes_only_ds_and_splits_ddl_from_the_transaction() -> None:
    template = (
        "-- a comment; with {{ other }}\nCREATE TABLE t (d DATE);\nDELETE FROM t WHERE d = DATE '{{ds}}';\n"
    )
    setup, transaction = render(template, DS)
    assert setup == ["CREATE TABLE t (d DATE)"]
    assert transaction == ["DELETE FROM t WHERE d = DATE '2026-12-04'"]
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \['params.x'\]"):
        render("SELECT {{ params.x }}", DS)
    assert parse_ds("2026-12-04") == DS == parse_ds(DS)


def test_source_tables_never_carry_personal_data(lake: Lake) -> None:
    tables = source_tables(SPEC, lake)
    assert set(tables) == {"credit_score", "credit_score_features"}
    assert all("ssn_hash" not in table.column_names for table in tables.values())
    assert tables["credit_score"].num_rows == 600


def test_a_use_case_without_an_extraction_is_a_config_error(lake: Lake) -> None:
    with pytest.raises(ConfigError, match="has no extraction"):
        run_extraction(dataclasses.replace(SPEC, extraction=None), DUCKDB, lake, DS)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("postgresql://u:p@127.0.0.1/db", "is not a MySQL URL"),
        ("mysql+pymysql://u:p@127.0.0.1", "names no database"),
    ],
)
def test_a_bad_mysql_url_is_a_config_error(lake: Lake, url: str, message: str) -> None:
    config = ExtractConfig(source="mysql", url=url)
    with pytest.raises(ConfigError, match=message):
        run_extraction(SPEC, config, lake, DS)


def test_an_unreachable_mysql_server_is_a_data_error_without_the_password(lake: Lake) -> None:
    config = ExtractConfig(source="mysql", url=f"mysql://user:secret@127.0.0.1:{free_port()}/features")
    with pytest.raises(
        DataError, match=r"data.extract.url: cannot connect to mysql\+pymysql://user:\*\*\*@"
    ) as caught:
        run_extraction(SPEC, config, lake, DS)
    assert "secret" not in str(caught.value)


def test_the_target_declares_the_credit_lake_types() -> None:
    """The template's target has the type of the credit lake column it copies (a float64 into BIGINT
    would round on MySQL; an int64 into DOUBLE would change the extracted type), and this module's
    hand-built table has the shape of the credit use case's."""
    tables = pytest.importorskip("flywheel.usecases.credit.tables")
    lake_types = {column.name: column.type for column in tables.CREDIT_RECORDS.columns}
    assert {name: lake_types.get(name) for name in FEATURES} == FEATURES
    con = duckdb.connect()
    setup, _ = render(SPEC.sql_text(EXTRACTION.sql), DS)
    for statement in setup:
        con.execute(statement)
    declared = dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {EXTRACTION.target})").fetchall()
    )
    duck = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}
    assert {name: declared[name] for name in FEATURES} == {
        name: duck[kind] for name, kind in FEATURES.items()
    }


def credit_use_case() -> UseCase:
    """The credit use case, with this module's extraction until it carries its own (skips while the
    package is not built)."""
    credit = pytest.importorskip("flywheel.usecases.credit")
    if not hasattr(credit, "USE_CASE"):
        pytest.skip("the credit use case is not built yet")
    return (
        credit.USE_CASE
        if credit.USE_CASE.extraction
        else dataclasses.replace(credit.USE_CASE, extraction=EXTRACTION)
    )


def generated_credit_lake(root, spec: UseCase, customers: int = 300) -> Lake:
    """A lake of the credit use case's own generated statements (January to March 2024)."""
    settings = spec.generator_settings(customers=customers, start=date(2024, 1, 1), end=date(2024, 4, 1))
    lake = Lake(Workdir.at(root), spec)
    lake.commit(spec.generator.generate(settings, "generated"))
    return lake


def test_the_extraction_over_the_credit_use_cases_generated_lake(tmp_path) -> None:
    spec = credit_use_case()
    lake = generated_credit_lake(tmp_path / "wd", spec)
    ds = date(2024, 3, 15)
    result = run_extraction(spec, DUCKDB, lake, ds)
    assert result.rows.to_pylist() == expected_rows(lake.read("credit_records"), ds)
    assert result.rows_for_ds == 300  # one monthly statement per customer
    assert "ssn_hash" not in result.rows.column_names


def test_the_lookback_months_placeholder_takes_only_a_whole_number() -> None:
    _, statements = render("SELECT DATE '{{ ds }}' - INTERVAL {{ lookback_months }} MONTH", DS, "t", 3)
    assert statements == [f"SELECT DATE '{DS.isoformat()}' - INTERVAL 3 MONTH"]
    for bad in (0, "3; DROP TABLE x", 1.5, True):
        with pytest.raises(ConfigError, match="lookback_months"):
            render("SELECT {{ lookback_months }}", DS, "t", bad)
