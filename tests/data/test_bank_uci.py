"""Reading and writing the UCI Bank Marketing files as published: layouts, dates, errors, chunks."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flywheel.errors import DataError
from flywheel.usecases.bank.generator import GeneratorSettings, generate_batch
from flywheel.usecases.bank.tables import CONTACTS, INDICATORS, MACRO
from flywheel.usecases.bank.uci import (
    ADDITIONAL_COLUMNS,
    FULL_COLUMNS,
    TRANSLATIONS,
    iter_uci,
    read_uci,
    write_uci,
)

FULL_HEADER = (
    '"age";"job";"marital";"education";"default";"balance";"housing";"loan";"contact";"day";"month";'
    '"duration";"campaign";"pdays";"previous";"poutcome";"y"'
)
# 13 rows: a month run and a month change across chunk boundaries of 3 rows, jun → nov (5 months
# forward) and a dec → jan rollover at the first row of a chunk.
FULL_ROWS = """\
58;"management";"married";"tertiary";"no";2143;"yes";"no";"unknown";5;"may";261;1;-1;0;"unknown";"no"
44;"technician";"single";"secondary";"no";29;"yes";"no";"unknown";5;"may";151;1;-1;0;"unknown";"no"
33;"entrepreneur";"married";"secondary";"no";2;"yes";"yes";"unknown";28;"may";76;1;-1;0;"unknown";"no"
47;"blue-collar";"married";"unknown";"no";1506;"yes";"no";"unknown";30;"may";92;1;-1;0;"unknown";"no"
33;"unknown";"single";"unknown";"no";1;"no";"no";"unknown";2;"jun";198;1;-1;0;"unknown";"no"
35;"management";"married";"tertiary";"no";231;"yes";"no";"unknown";30;"jun";139;1;-1;0;"unknown";"no"
28;"management";"single";"tertiary";"no";447;"yes";"yes";"cellular";17;"nov";217;1;-1;0;"unknown";"no"
42;"entrepreneur";"divorced";"tertiary";"yes";-2;"yes";"no";"cellular";2;"dec";380;1;-1;0;"unknown";"no"
58;"retired";"married";"primary";"no";121;"yes";"no";"cellular";29;"dec";50;1;-1;0;"unknown";"no"
43;"technician";"single";"secondary";"no";593;"yes";"no";"cellular";8;"jan";55;1;-1;0;"unknown";"no"
41;"admin.";"divorced";"secondary";"no";270;"yes";"no";"cellular";8;"jan";222;2;91;3;"failure";"yes"
29;"admin.";"single";"secondary";"no";390;"yes";"no";"telephone";12;"feb";137;1;182;1;"other";"no"
53;"technician";"married";"secondary";"no";6;"yes";"no";"cellular";3;"mar";517;1;35;2;"success";"yes"
"""
FULL_DATES = [
    date(2008, 5, 5),
    date(2008, 5, 5),
    date(2008, 5, 28),
    date(2008, 5, 30),
    date(2008, 6, 2),
    date(2008, 6, 30),
    date(2008, 11, 17),
    date(2008, 12, 2),
    date(2008, 12, 29),
    date(2009, 1, 8),
    date(2009, 1, 8),
    date(2009, 2, 12),
    date(2009, 3, 3),
]

ADDITIONAL_HEADER = (
    '"age";"job";"marital";"education";"default";"housing";"loan";"contact";"month";"day_of_week";'
    '"duration";"campaign";"pdays";"previous";"poutcome";"emp.var.rate";"cons.price.idx";"cons.conf.idx";'
    '"euribor3m";"nr.employed";"y"'
)
# 17 rows walking the weeks of May 2008 (the 1st is a Thursday), then jun, nov and a nov → mar rollover
# across a chunk boundary; the first two rows share a date but not their euribor3m.
ADDITIONAL_ROWS = """\
56;"housemaid";"married";"basic.4y";"no";"no";"no";"telephone";"may";"mon";261;1;999;0;"nonexistent";1.1;93.994;-36.4;4.857;5191;"no"
57;"services";"married";"high.school";"unknown";"no";"no";"telephone";"may";"mon";149;1;999;0;"nonexistent";1.1;93.994;-36.4;4.856;5191;"no"
37;"services";"married";"high.school";"no";"yes";"no";"telephone";"may";"wed";226;1;999;0;"nonexistent";1.1;93.994;-36.4;4.857;5191;"no"
40;"admin.";"married";"basic.6y";"no";"no";"no";"telephone";"may";"fri";151;1;999;0;"nonexistent";1.1;93.994;-36.4;4.855;5191;"no"
56;"services";"married";"high.school";"no";"no";"yes";"telephone";"may";"tue";307;1;999;0;"nonexistent";1.1;93.994;-36.4;4.859;5191;"no"
45;"services";"married";"basic.9y";"unknown";"no";"no";"telephone";"may";"thu";198;1;999;0;"nonexistent";1.1;93.994;-36.4;4.856;5191;"no"
59;"admin.";"married";"professional.course";"no";"no";"no";"telephone";"may";"fri";139;1;999;0;"nonexistent";1.1;93.994;-36.4;4.855;5191;"no"
41;"blue-collar";"married";"unknown";"unknown";"no";"no";"telephone";"may";"mon";217;1;999;0;"nonexistent";1.1;93.994;-36.4;4.856;5191;"no"
24;"technician";"single";"professional.course";"no";"yes";"no";"telephone";"may";"wed";380;1;999;0;"nonexistent";1.1;93.994;-36.4;4.86;5191;"no"
25;"services";"single";"high.school";"no";"yes";"no";"telephone";"may";"fri";50;1;999;0;"nonexistent";1.1;93.994;-36.4;4.864;5191;"no"
41;"blue-collar";"married";"unknown";"unknown";"no";"no";"telephone";"may";"mon";55;1;999;0;"nonexistent";1.1;93.994;-36.4;4.865;5191;"no"
25;"services";"single";"high.school";"no";"yes";"no";"telephone";"may";"fri";222;1;999;0;"nonexistent";1.1;93.994;-36.4;4.866;5191;"no"
29;"blue-collar";"single";"high.school";"no";"no";"yes";"telephone";"jun";"tue";137;1;999;0;"nonexistent";1.4;94.465;-41.8;4.961;5228.1;"no"
57;"housemaid";"divorced";"basic.4y";"no";"yes";"no";"cellular";"nov";"wed";293;1;999;0;"nonexistent";-0.1;93.2;-42;4.12;5195.8;"no"
35;"blue-collar";"married";"basic.6y";"no";"yes";"no";"cellular";"nov";"thu";146;1;6;1;"success";-0.1;93.2;-42;4.12;5195.8;"yes"
54;"retired";"married";"basic.9y";"unknown";"yes";"yes";"cellular";"mar";"mon";174;1;999;1;"failure";-1.8;92.843;-50;1.811;5099.1;"no"
35;"admin.";"married";"university.degree";"no";"yes";"no";"telephone";"mar";"tue";312;1;999;0;"nonexistent";-1.8;92.843;-50;1.811;5099.1;"no"
"""
ADDITIONAL_DATES = [
    date(2008, 5, 5),
    date(2008, 5, 5),
    date(2008, 5, 7),
    date(2008, 5, 9),
    date(2008, 5, 13),
    date(2008, 5, 15),
    date(2008, 5, 16),
    date(2008, 5, 19),
    date(2008, 5, 21),
    date(2008, 5, 23),
    date(2008, 5, 26),
    date(2008, 5, 30),
    date(2008, 6, 3),
    date(2008, 11, 5),
    date(2008, 11, 6),
    date(2009, 3, 2),
    date(2009, 3, 3),
]


def _write(tmp_path: Path, name: str, header: str, rows: str) -> Path:
    path = tmp_path / name
    path.write_text(f"{header}\n{rows}")
    return path


def _dates(table: pa.Table) -> list[date]:
    return [moment.date() for moment in table.column("contact_at").to_pylist()]


@pytest.fixture
def full_csv(tmp_path: Path) -> Path:
    return _write(tmp_path, "bank-full.csv", FULL_HEADER, FULL_ROWS)


@pytest.fixture
def additional_csv(tmp_path: Path) -> Path:
    return _write(tmp_path, "bank-additional-full.csv", ADDITIONAL_HEADER, ADDITIONAL_ROWS)


def test_bank_full_layout_reads_values_and_reconstructs_dates(full_csv: Path) -> None:
    tables = read_uci(full_csv)
    assert set(tables) == {"contacts"}
    contacts = tables["contacts"]
    assert contacts.schema.equals(CONTACTS.arrow_schema)
    assert _dates(contacts) == FULL_DATES
    assert all(
        moment.hour == 0 and moment.tzname() == "UTC" for moment in contacts.column("contact_at").to_pylist()
    )
    assert contacts.column("contact_id").to_pylist() == list(range(1, 14))
    assert contacts.column("client_id").null_count == 13
    assert contacts.column("pdays").to_pylist() == [None] * 10 + [91, 182, 35]
    assert contacts.column("balance").to_pylist()[:8] == [2143.0, 29.0, 2.0, 1506.0, 1.0, 231.0, 447.0, -2.0]
    assert contacts.column("job").to_pylist()[4] == "unknown"  # a category, never null
    assert contacts.column("education").to_pylist()[3] == "unknown"
    assert contacts.column("poutcome").to_pylist()[-3:] == ["failure", "other", "success"]
    for column in ("day_of_week", *INDICATORS):
        assert contacts.column(column).null_count == 13, column


def test_bank_additional_layout_walks_weeks_and_publishes_macro(additional_csv: Path) -> None:
    tables = read_uci(additional_csv)
    contacts, macro = tables["contacts"], tables["macro"]
    assert contacts.schema.equals(CONTACTS.arrow_schema) and macro.schema.equals(MACRO.arrow_schema)
    assert _dates(contacts) == ADDITIONAL_DATES
    assert contacts.column("pdays").to_pylist() == [None] * 14 + [6, None, None]
    assert contacts.column("day").null_count == contacts.column("balance").null_count == 17
    assert contacts.column("education").to_pylist()[7] == "unknown"
    assert contacts.column("nr_employed").to_pylist()[12] == 5228.1

    # one row per contact date, published at that date's midnight: never after its contacts
    distinct = sorted(set(ADDITIONAL_DATES))
    assert [moment.date() for moment in macro.column("published_at").to_pylist()] == distinct
    for row in macro.to_pylist():
        same_day = contacts.filter(pc.equal(contacts.column("contact_at"), pa.scalar(row["published_at"])))
        assert same_day.num_rows > 0
        assert all(row["published_at"] <= moment for moment in same_day.column("contact_at").to_pylist())
        first = same_day.slice(0, 1).to_pylist()[0]
        assert all(row[name] == first[name] for name in INDICATORS)
    assert macro.column("euribor3m").to_pylist()[0] == 4.857  # the day's first contact wins over 4.856


def test_week_walk_is_clamped_at_the_month_end(tmp_path: Path) -> None:
    template = ADDITIONAL_ROWS.splitlines()[0]
    weekdays = ["mon", "fri"] * 4 + ["mon", "tue"]  # the 5th Monday walked to would be June 2
    rows = "".join(template.replace('"mon"', f'"{day}"') + "\n" for day in weekdays)
    contacts = read_uci(_write(tmp_path, "walk.csv", ADDITIONAL_HEADER, rows))["contacts"]
    assert [d.day for d in _dates(contacts)] == [5, 9, 12, 16, 19, 23, 26, 30, 26, 27]


@pytest.mark.parametrize(
    ("name", "header", "rows"),
    [("full", FULL_HEADER, FULL_ROWS), ("add", ADDITIONAL_HEADER, ADDITIONAL_ROWS)],
)
def test_reading_in_chunks_gives_the_same_tables(tmp_path: Path, name: str, header: str, rows: str) -> None:
    path = _write(tmp_path, f"{name}.csv", header, rows)
    whole = read_uci(path)
    chunked = read_uci(path, chunk_rows=3)
    assert set(whole) == set(chunked)
    for table in whole:
        assert chunked[table].equals(whole[table]), table
    chunks = list(iter_uci(path, chunk_rows=3))
    assert [chunk.num_rows for chunk in chunks][:4] == [3, 3, 3, 3]
    assert pa.concat_tables(chunks).equals(whole["contacts"])


def test_gzipped_files_read_like_plain_ones(full_csv: Path, tmp_path: Path) -> None:
    packed = tmp_path / "bank-full.csv.gz"
    packed.write_bytes(gzip.compress(full_csv.read_bytes()))
    assert read_uci(packed, chunk_rows=4)["contacts"].equals(read_uci(full_csv)["contacts"])


def test_write_uci_reproduces_the_published_text(
    full_csv: Path, additional_csv: Path, tmp_path: Path
) -> None:
    for source, layout in ((full_csv, "full"), (additional_csv, "additional")):
        target = tmp_path / f"out-{layout}.csv"
        write_uci(read_uci(source)["contacts"], target, layout)
        assert target.read_text() == source.read_text(), layout


def test_a_month_earlier_than_the_previous_rows_is_rejected_by_row(tmp_path: Path) -> None:
    rows = FULL_ROWS.splitlines()
    text = "\n".join([rows[4], rows[0]]) + "\n"  # jun then may: eleven months forward
    with pytest.raises(DataError) as error:
        read_uci(_write(tmp_path, "bank.csv", FULL_HEADER, text))
    message = str(error.value)
    assert "bank.csv: row 2 (line 3)" in message
    assert "month 'may' after 'jun' would skip 11 months" in message


def test_the_largest_step_forward_is_a_parameter(tmp_path: Path) -> None:
    rows = FULL_ROWS.splitlines()
    path = _write(tmp_path, "bank.csv", FULL_HEADER, "\n".join([rows[0], rows[7]]) + "\n")  # may → dec
    with pytest.raises(DataError, match=r"row 2 \(line 3\): month 'dec' after 'may' would skip 7 months"):
        read_uci(path)
    assert _dates(read_uci(path, max_gap_months=7)["contacts"]) == [date(2008, 5, 5), date(2008, 12, 2)]


def test_a_day_going_back_within_a_month_is_rejected_by_row(tmp_path: Path) -> None:
    rows = FULL_ROWS.splitlines()
    path = _write(tmp_path, "bank.csv", FULL_HEADER, "\n".join([rows[0], rows[2], rows[1]]) + "\n")
    with pytest.raises(DataError, match=r"bank.csv: row 3 \(line 4\): day 5 after day 28 of 'may'"):
        read_uci(path)


def test_a_day_the_month_does_not_have_is_rejected_by_row(tmp_path: Path) -> None:
    rows = FULL_ROWS.splitlines()
    path = _write(tmp_path, "bank.csv", FULL_HEADER, rows[0] + "\n" + rows[5].replace("30;", "31;", 1) + "\n")
    with pytest.raises(DataError, match=r"row 2 \(line 3\): day 31 of 'jun' 2008 is not a date"):
        read_uci(path)


def test_a_header_of_neither_layout_names_missing_and_unexpected_columns(tmp_path: Path) -> None:
    header = FULL_HEADER.replace('"balance"', '"saldo"')
    with pytest.raises(DataError) as error:
        read_uci(_write(tmp_path, "bank.csv", header, FULL_ROWS))
    message = str(error.value)
    assert "bank.csv" in message and "missing columns ['balance']" in message and "['saldo']" in message
    reordered = FULL_HEADER.replace('"day";"month"', '"month";"day"')
    with pytest.raises(DataError, match="not in the published order"):
        read_uci(_write(tmp_path, "bank.csv", reordered, FULL_ROWS))


def test_a_non_number_is_rejected_naming_row_column_and_value(tmp_path: Path) -> None:
    rows = FULL_ROWS.splitlines()
    text = "\n".join([rows[0], rows[1].replace("44;", "forty-four;", 1), rows[2]]) + "\n"
    with pytest.raises(DataError) as error:
        read_uci(_write(tmp_path, "bank.csv", FULL_HEADER, text), chunk_rows=1)
    message = str(error.value)
    assert "row 2 (line 3): column 'age' holds 'forty-four'; expected an integer" in message
    bad_rate = ADDITIONAL_ROWS.splitlines()[0].replace("4.857", "4,857")
    with pytest.raises(
        DataError, match=r"row 1 \(line 2\): column 'euribor3m' holds '4,857'; expected a number"
    ):
        read_uci(_write(tmp_path, "add.csv", ADDITIONAL_HEADER, bad_rate + "\n"))


def test_an_unknown_month_or_weekday_is_rejected_by_row(tmp_path: Path) -> None:
    rows = ADDITIONAL_ROWS.splitlines()
    text = rows[0] + "\n" + rows[1].replace('"mon"', '"sat"') + "\n"
    with pytest.raises(DataError, match=r"row 2 \(line 3\): column 'day_of_week' holds 'sat'"):
        read_uci(_write(tmp_path, "add.csv", ADDITIONAL_HEADER, text))
    with pytest.raises(DataError, match=r"row 1 \(line 2\): column 'month' holds 'mai'"):
        read_uci(_write(tmp_path, "add.csv", ADDITIONAL_HEADER, rows[0].replace('"may"', '"mai"') + "\n"))


def test_writing_a_layout_needs_its_vocabulary_and_columns(full_csv: Path, tmp_path: Path) -> None:
    contacts = read_uci(full_csv)["contacts"]
    # bank-full's coarse education has no bank-additional equivalent
    with pytest.raises(DataError, match=r"column 'education' holds \['primary', 'secondary', 'tertiary'\]"):
        write_uci(contacts, tmp_path / "out.csv", "additional")
    index = contacts.schema.get_field_index("education")
    contacts = contacts.set_column(index, "education", pa.array(["unknown"] * contacts.num_rows))
    with pytest.raises(DataError, match="column 'day_of_week' is null in row 1 \\(13 rows\\)"):
        write_uci(contacts, tmp_path / "out.csv", "additional")


@pytest.fixture(scope="module")
def generated() -> pa.Table:
    settings = GeneratorSettings(clients=400, end=date(2009, 4, 1), contacts_per_month=300, seed=5)
    return generate_batch(settings).tables["contacts"]


def _translated(column: list[str], name: str) -> list[str]:
    return [TRANSLATIONS["full"][name].get(value, value) for value in column]


def test_generated_contacts_round_trip_through_bank_full(generated: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "bank-full.csv.gz"
    write_uci(generated, path, "full")
    contacts = read_uci(path)["contacts"]
    assert contacts.num_rows == generated.num_rows
    assert contacts.column("contact_id").equals(generated.column("contact_id"))
    assert _dates(contacts) == _dates(generated)  # exactly: bank-full carries the day
    for published in FULL_COLUMNS:
        name = published.replace(".", "_")
        expected = generated.column(name).to_pylist()
        if name in TRANSLATIONS["full"]:
            expected = _translated(expected, name)
        assert contacts.column(name).to_pylist() == expected, name


def test_generated_contacts_round_trip_through_bank_additional(generated: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "bank-additional-full.csv"
    write_uci(generated, path, "additional")
    tables = read_uci(path, chunk_rows=1000)
    contacts = tables["contacts"]
    # dense campaigns (every week has calls) walk to the generated dates exactly
    assert _dates(contacts) == _dates(generated)
    for published in ADDITIONAL_COLUMNS:
        name = published.replace(".", "_")
        assert contacts.column(name).equals(generated.column(name)), name
    assert tables["macro"].num_rows == len(set(_dates(generated)))
