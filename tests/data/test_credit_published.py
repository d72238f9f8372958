"""Credit files in the published (Kaggle) layout: each cleaning rule, the quarantine report of a dirty
file ingested through the CLI, a broken header, a quarantined share over the bound (the lake byte for
byte unchanged), and no name or raw SSN anywhere in the lake, the reports or the features."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.config import default_config
from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.data.pii import mask_records, mask_table, pseudonym
from flywheel.errors import DataError
from flywheel.features import ops as feature_ops
from flywheel.usecases.credit import identity
from flywheel.usecases.credit.dirt import QUARANTINED
from flywheel.usecases.credit.generator import GeneratorSettings, generate_batch
from flywheel.usecases.credit.published import (
    BALANCE_SENTINEL,
    COLUMNS,
    QUARANTINE_RULES,
    clean,
    read_published,
    read_strings,
    write_published,
)
from flywheel.workdir import Workdir
from tests.conftest import tree_digest

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "credit.yaml"
SPEC = default_config("credit").spec


@pytest.fixture(scope="module")
def records() -> pa.Table:
    settings = GeneratorSettings(customers=400, start=date(2024, 1, 1), end=date(2024, 7, 1), seed=3)
    return generate_batch(settings).tables["credit_records"]


def _cli(*args: str, workdir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flywheel", "--config", str(CONFIG), "--workdir", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


ROW = {
    "ID": "0x1602",
    "Customer_ID": "CUS_0xd40",
    "Month": "January",
    "Name": "Aaron Maashoh",
    "Age": "23",
    "SSN": "821-00-0265",
    "Occupation": "Scientist",
    "Annual_Income": "19114.12",
    "Monthly_Inhand_Salary": "1824.843333",
    "Num_Bank_Accounts": "3",
    "Num_Credit_Card": "4",
    "Interest_Rate": "3",
    "Num_of_Loan": "4",
    "Type_of_Loan": "Auto Loan, Credit-Builder Loan, Personal Loan, and Home Equity Loan",
    "Delay_from_due_date": "3",
    "Num_of_Delayed_Payment": "7",
    "Changed_Credit_Limit": "11.27",
    "Num_Credit_Inquiries": "4.0",
    "Credit_Mix": "Good",
    "Outstanding_Debt": "809.98",
    "Credit_Utilization_Ratio": "26.82261962",
    "Credit_History_Age": "22 Years and 1 Months",
    "Payment_of_Min_Amount": "No",
    "Total_EMI_per_month": "49.57494921",
    "Amount_invested_monthly": "80.41529544",
    "Payment_Behaviour": "High_spent_Small_value_payments",
    "Monthly_Balance": "312.4940887",
    "Credit_Score": "Good",
}
MONTHS = ("January", "February", "March", "April")


def _file(path: Path, changes: list[dict[str, str]], header: tuple[str, ...] = COLUMNS) -> Path:
    """One customer's months January… with ``changes`` applied to each month's row."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i, change in enumerate(changes):
            row = {**ROW, "ID": f"0x{0x1602 + i:x}", "Month": MONTHS[i % 4], **change}
            writer.writerow([row.get(name, "") for name in header])
    return path


def _cleaned(path: Path):
    cleaned = clean(read_strings(path))
    return cleaned, cleaned.published.tables["credit_records"].to_pylist()


def test_published_values_convert_to_the_lake_columns(tmp_path: Path) -> None:
    published = read_published(_file(tmp_path / "train.csv", [{}, {"Month": "February"}]))
    assert published is not None and published.quarantine.rows == 0
    first = published.tables["credit_records"].to_pylist()[0]
    assert first["credit_history_months"] == 265 and first["num_credit_inquiries"] == 4
    assert first["record_date"].isoformat() == "2024-01-01T00:00:00+00:00"
    assert first["ssn_hash"] == pseudonym("821-00-0265") and "Name" not in first and "SSN" not in first
    assert first["payment_of_min_amount"] == "No" and first["type_of_loan"].startswith("Auto Loan")


def test_underscores_sentinels_and_placeholders_are_cleaned(tmp_path: Path) -> None:
    changes = [
        {"Age": "23_", "Annual_Income": "_19114.12", "Num_of_Loan": "4_", "Changed_Credit_Limit": "_"},
        {"Monthly_Balance": BALANCE_SENTINEL, "Amount_invested_monthly": "__10000__"},
        {"Occupation": "_______", "Credit_Mix": "_", "Payment_Behaviour": "!@9#%8"},
        {"Payment_of_Min_Amount": "NM", "SSN": "#F%$D@*&8", "Credit_History_Age": ""},
    ]
    cleaned, rows = _cleaned(_file(tmp_path / "train.csv", changes))
    assert (rows[0]["age"], rows[0]["annual_income"], rows[0]["num_of_loan"]) == (23, 19114.12, 4)
    assert rows[0]["changed_credit_limit"] is None
    assert rows[1]["monthly_balance"] is None and rows[1]["amount_invested_monthly"] is None
    assert (rows[2]["occupation"], rows[2]["credit_mix"]) == ("Scientist", "Good")  # the customer's own
    assert rows[2]["payment_behaviour"] == "unknown"
    assert rows[3]["payment_of_min_amount"] == "NM" and rows[3]["ssn_hash"] is None
    assert rows[3]["credit_history_months"] is None
    assert cleaned.repairs["underscore_number"] == 4 and cleaned.repairs["ssn_malformed"] == 1
    assert cleaned.repairs["balance_sentinel"] == cleaned.repairs["invested_sentinel"] == 1


def test_placeholders_without_a_customer_value_are_unknown(tmp_path: Path) -> None:
    _, rows = _cleaned(_file(tmp_path / "train.csv", [{"Occupation": "_______", "Credit_Mix": "_"}]))
    assert (rows[0]["occupation"], rows[0]["credit_mix"]) == ("unknown", "unknown")


def test_outliers_take_the_customers_most_common_valid_value(tmp_path: Path) -> None:
    changes = [
        {"Age": "-500", "Num_Bank_Accounts": "1414", "Interest_Rate": "5797", "Annual_Income": "10909427.0"},
        {"Num_of_Loan": "-100", "Num_Credit_Card": "1385", "Num_Credit_Inquiries": "2597"},
        {"Num_of_Delayed_Payment": "-1", "Age": "24"},
        {"Age": "24"},
    ]
    cleaned, rows = _cleaned(_file(tmp_path / "train.csv", changes))
    assert [row["age"] for row in rows] == [24, 23, 24, 24]  # 24 is the most common valid age
    assert rows[0]["num_bank_accounts"] == 3 and rows[0]["interest_rate"] == 3
    assert rows[0]["annual_income"] == 19114.12
    assert (rows[1]["num_of_loan"], rows[1]["num_credit_card"], rows[1]["num_credit_inquiries"]) == (4, 4, 4)
    assert rows[2]["num_of_delayed_payment"] == 7
    assert cleaned.repairs["age_outlier"] == 1 and cleaned.repairs["income_outlier"] == 1
    assert cleaned.repairs["count_outlier"] == 6


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"ID": ""}, "missing_key"),
        ({"Customer_ID": ""}, "missing_key"),
        ({"Credit_Score": ""}, "bad_credit_score"),
        ({"Credit_Score": "Excellent"}, "bad_credit_score"),
        ({"Month": "Janvier"}, "unknown_month"),
        ({"Outstanding_Debt": "1,183.21"}, "unparseable_number"),
        ({"Age": "twenty"}, "unparseable_number"),
        ({"Credit_History_Age": "22 years"}, "unparseable_number"),
        ({"Credit_Mix": "Great"}, "unknown_category"),
        ({"Total_EMI_per_month": ""}, "missing_value"),
    ],
)
def test_rows_no_rule_can_clean_are_quarantined(tmp_path: Path, change: dict[str, str], rule: str) -> None:
    published = read_published(_file(tmp_path / "train.csv", [change, {}]))
    assert published.tables["credit_records"].num_rows == 1
    quarantine = published.quarantine
    assert (quarantine.rows_read, quarantine.counts) == (2, {rule: 1})
    example = quarantine.examples[rule][0]
    assert example["row"] == 1 and "Name" not in example and "SSN" not in example
    assert example["SSN_hash"] == pseudonym("821-00-0265")
    assert quarantine.rules == QUARANTINE_RULES


def test_an_age_or_count_with_no_valid_value_for_the_customer_is_quarantined(tmp_path: Path) -> None:
    ages = read_published(_file(tmp_path / "ages.csv", [{"Age": "-500"}, {"Age": "7580"}]))
    assert ages.quarantine.counts == {"age_unrepairable": 2}
    counts = read_published(_file(tmp_path / "counts.csv", [{"Num_Bank_Accounts": "1414"}]))
    assert counts.quarantine.counts == {"count_unrepairable": 1}
    nullable = read_published(_file(tmp_path / "null.csv", [{"Num_Credit_Inquiries": "2597"}]))
    assert nullable.quarantine.rows == 0  # a nullable count without a valid value is null
    assert nullable.tables["credit_records"].column("num_credit_inquiries").null_count == 1


def test_months_roll_over_to_the_next_year_per_customer(tmp_path: Path) -> None:
    changes = [{"Month": "November"}, {"Month": "December"}, {"Month": "January"}, {"Month": "March"}]
    other = {"Customer_ID": "CUS_0x1", "Month": "February"}  # another customer starts in first_year
    published = read_published(_file(tmp_path / "train.csv", [*changes, other]), first_year=2023)
    dates = [
        d.date().isoformat() for d in published.tables["credit_records"].column("record_date").to_pylist()
    ]
    assert dates == ["2023-11-01", "2023-12-01", "2024-01-01", "2024-03-01", "2023-02-01"]


def test_a_broken_header_is_one_line_naming_missing_and_unexpected_columns(tmp_path: Path) -> None:
    header = tuple("Score" if name == "Credit_Score" else name for name in COLUMNS if name != "SSN")
    path = _file(tmp_path / "train.csv", [{}], header=header)
    with pytest.raises(DataError) as error:
        read_published(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "missing columns ['SSN', 'Credit_Score']" in message and "unexpected columns ['Score']" in message
    done = _cli("data", "ingest", str(path), workdir=tmp_path / "wd")
    assert done.returncode == 1
    assert "unexpected columns ['Score']" in done.stderr and "Traceback" not in done.stderr


def test_a_file_of_another_layout_is_not_read_as_published(tmp_path: Path, records: pa.Table) -> None:
    path = tmp_path / "credit_records.csv"
    path.write_text("a,b\n1,2\n")
    assert read_published(path) is None


def test_written_files_read_back_as_the_lake_rows(tmp_path: Path, records: pa.Table) -> None:
    path = tmp_path / "train.csv.gz"
    assert write_published({"credit_records": records}, path) == {}
    published = read_published(path)
    assert published.quarantine.rows == 0
    back = published.tables["credit_records"].sort_by("id")
    expected = records.sort_by("id")
    for name in expected.column_names:
        if name != "record_date":  # the published file has the month only: the 1st
            assert back.column(name).equals(expected.column(name)), name


def _lake_text(workdir: Workdir) -> str:
    tables = [pq.read_table(p).to_pandas().to_csv() for p in workdir.lake.rglob("*.parquet")]
    return "\n".join(tables)


def test_a_dirty_file_ingests_with_a_quarantine_report_matching_the_dirt(
    tmp_path: Path, records: pa.Table
) -> None:
    """`flywheel --config configs/credit.yaml data ingest train.csv`: every kind of published dirt is
    cleaned, the rows no rule can clean are counted per rule exactly as injected, and no name or raw
    SSN reaches the lake, the report or the features."""
    path = tmp_path / "train.csv"
    injected = write_published(records, path, dirty=dict.fromkeys(QUARANTINED, 0.004), seed=11)
    assert all(injected[kind] for kind in injected)  # every kind of dirt is in the file
    done = _cli("data", "ingest", str(path), workdir=tmp_path / "wd")
    assert done.returncode == 0, done.stderr
    assert "quarantined in" in done.stdout
    workdir = Workdir.at(tmp_path / "wd")
    lake = Lake(workdir, SPEC)
    (batch,) = lake.batches()
    report = json.loads(workdir.quarantine_report(batch["batch_id"]).read_text())
    assert report["accepted"] is True
    rules = report["files"][str(path)]["rules"]
    assert {rule: entry["count"] for rule, entry in rules.items() if entry["count"]} == {
        kind: injected[kind] for kind in QUARANTINED
    }
    quarantined = sum(injected[kind] for kind in QUARANTINED)
    assert lake.read("credit_records").num_rows == records.num_rows - quarantined

    feature_ops.build(default_config("credit", workdir=str(workdir.root)), workdir)
    customers = {c for c in records.column("customer_id").to_pylist()}
    secrets = {identity.ssn_of(c) for c in customers} | {identity.name_of(c) for c in customers}
    texts = {
        "lake": _lake_text(workdir),
        "report": workdir.quarantine_report(batch["batch_id"]).read_text(),
        "features": "\n".join(
            pq.read_table(p).to_pandas().to_csv() for p in workdir.features.rglob("*.parquet")
        ),
    }
    for where, text in texts.items():
        assert not [secret for secret in secrets if secret in text], where
        assert "Name" not in text and '"SSN"' not in text, where


def test_a_quarantined_share_over_the_bound_rejects_the_batch_and_leaves_the_lake(
    tmp_path: Path, records: pa.Table
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    first = records.slice(0, 1000)
    write_published(first, tmp_path / "first.csv")
    ops.ingest(SPEC, workdir, [tmp_path / "first.csv"])
    path = tmp_path / "train.csv"
    injected = write_published(records.slice(1000), path, dirty={"unknown_month": 0.1}, seed=2)
    before = tree_digest(workdir.lake)
    done = _cli("data", "ingest", str(path), workdir=workdir.root)
    assert done.returncode == 1
    error = next(line for line in done.stderr.splitlines() if line.startswith("error:"))
    share = injected["unknown_month"] / (records.num_rows - 1000)
    assert str(path) in error and f"({share:.1%})" in error and "max_quarantine_share 5.0%" in error
    assert f"unknown_month {injected['unknown_month']}" in error
    assert tree_digest(workdir.lake) == before
    # the accepted first file's report (no row quarantined) and the rejected file's
    reports = [json.loads(p.read_text()) for p in workdir.quarantine_reports.glob("*.json")]
    assert sorted(r["accepted"] for r in reports) == [False, True]


def test_pii_rules_drop_and_hash_tables_and_records() -> None:
    table = pa.table({"Name": ["A B", None], "SSN": ["821-00-0265", None], "Age": ["23", "24"]})
    masked = mask_table(table, {"Name": "drop", "SSN": "hash"}, salt_value="s")
    assert masked.column_names == ["SSN_hash", "Age"]
    assert masked.column("SSN_hash").to_pylist() == [pseudonym("821-00-0265", "s"), None]
    (record,) = mask_records(
        [{"Name": "A B", "SSN": "821-00-0265", "Age": "23"}], {"Name": "drop", "SSN": "hash"}
    )
    assert record == {"SSN_hash": pseudonym("821-00-0265"), "Age": "23"}


def test_the_report_counts_the_values_each_repair_changed(tmp_path: Path, records: pa.Table) -> None:
    """Repairs are reported too: about a value per injected sentinel, placeholder or malformed SSN (a
    cell that another kind of dirt also hit, e.g. emptied, counts under that one)."""
    path = tmp_path / "train.csv"
    injected = write_published(records, path, dirty=True, seed=5)
    workdir = Workdir.at(tmp_path / "wd")
    result = ops.ingest(SPEC, workdir, [path])
    repairs = result.quarantine["files"][str(path)]["repairs"]
    for kind in ("balance_sentinel", "invested_sentinel", "payment_behaviour_placeholder", "ssn_malformed"):
        assert 0.9 * injected[kind] <= repairs[kind]["values"] <= injected[kind], kind
        assert repairs[kind]["description"]
