"""Every use case's feature, context and label SQL (and its start and observed queries) is written
in the dialect DuckDB and Spark share (flywheel.data.engine): both parsers take it, and none of the
constructs that one engine lacks or reads differently appears. tests/integration/test_spark_parity.py
runs it on both."""

from __future__ import annotations

import re

import pytest
import sqlglot

from flywheel.config import default_config
from flywheel.data.engine import sections
from flywheel.usecases.spec import UseCase

USE_CASES = ["churn", "bank", "credit", "tests.usecase_toy"]
DECIMAL_LITERAL = r"(?<![\w.])\d+\.\d+(?![\w.])"
# construct → why it is kept out
FORBIDDEN = {
    r"\bdate_?diff\b": "DuckDB counts unit boundaries, Spark elapsed units: use unix_seconds differences "
    "or CAST(CAST(b AS DATE) - CAST(a AS DATE) AS BIGINT)",
    r"\bepoch\b": "Spark's unix_timestamp drops fractions: use unix_seconds",
    r"\barg_(max|min)\b": "Spark has max_by / min_by (so has DuckDB)",
    r"\bstrftime\b|\bdate_format\b": "spelled differently: compare timestamps or truncate with date_trunc",
    r"//": "integer division is DIV in Spark",
    r"::": "DuckDB-only cast syntax: use CAST(x AS T)",
    r"\bTIMESTAMPTZ\b": "Spark has no TIMESTAMPTZ: TIMESTAMP is the session-zoned (UTC) instant there",
    r"\bASOF\b": "Spark has no ASOF join",
    r"\bQUALIFY\b": "Spark 3.5 clusters lack it: filter a row_number() in a subquery",
    r"\bunnest\b|\blist_\w+": "DuckDB list functions",
    DECIMAL_LITERAL: "a decimal literal is DECIMAL: Spark's AVG and division then stay DECIMAL and "
    "round; write CAST(1 AS DOUBLE)",
}


def sql_files(name: str) -> dict[str, str]:
    config = default_config(name)
    spec: UseCase = config.spec
    files = [spec.snapshot.sql, *(view.sql for view in spec.context), spec.labels.sql]
    texts = {}
    for file in files:  # each section of a file with sections (flywheel.data.engine.sections)
        preps, main = sections(spec.sql_text(file).format(**config.labels.sql_params()))
        texts.update({f"{file} @prep {name}": select for name, select in preps})
        texts[file] = main
    texts["observed_sql"] = spec.labels.observed_sql
    if spec.snapshot.start_sql:
        texts["start_sql"] = spec.snapshot.start_sql
    return texts


def _code(sql: str) -> str:
    """The SQL without comments and string literals."""
    sql = re.sub(r"--[^\n]*", "", sql)
    return re.sub(r"'[^']*'", "''", sql)


@pytest.mark.parametrize("name", USE_CASES)
def test_both_parsers_take_every_sql_file(name: str) -> None:
    for file, sql in sql_files(name).items():
        for dialect in ("duckdb", "spark"):
            assert sqlglot.parse_one(sql, read=dialect), f"{name}/{file} as {dialect}"


@pytest.mark.parametrize("name", USE_CASES)
def test_no_construct_outside_the_shared_dialect(name: str) -> None:
    found = [
        f"{file}: {match.group(0)!r} ({why})"
        for file, sql in sql_files(name).items()
        for pattern, why in FORBIDDEN.items()
        for match in re.finditer(pattern, _code(sql), flags=re.IGNORECASE)
    ]
    assert not found, "\n".join(found)


def test_a_file_splits_into_its_sections() -> None:
    text = "-- head\n-- @prep a\nSELECT 1 AS x\n-- @prep b\nSELECT x FROM a\n-- @chunk\nSELECT * FROM b\n"
    preps, main = sections(text)
    assert preps == [("a", "SELECT 1 AS x"), ("b", "SELECT x FROM a")]
    assert main.strip() == "SELECT * FROM b"
    assert sections("SELECT 1") == ([], "SELECT 1")


def test_the_lint_catches_what_differs() -> None:
    code = _code("SELECT date_diff('day', a, b), x * 1.0, arg_max(y, t) -- 2.5 in a comment\nFROM t")
    caught = [p for p in FORBIDDEN if re.search(p, code, flags=re.IGNORECASE)]
    assert len(caught) == 3
    assert not re.search(FORBIDDEN[DECIMAL_LITERAL], _code("SELECT 'v1.2', CAST(1 AS DOUBLE)"))
