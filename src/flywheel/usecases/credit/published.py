"""Reading files in the published layout of the Kaggle "credit score classification" data.

The layout (``train.csv``): comma-separated, a header of exactly ``COLUMNS`` in that order, one row per
customer and month, strings throughout; ``.csv.gz`` works too. A header that differs is a one-line
``DataError`` naming the file and the missing and unexpected columns (a file sharing less than half
of them is not of this layout: :func:`read_published` returns None and it is read as a table file).

Conformance. The published data is dirty in known ways; each row is cleaned by these rules
(``REPAIRS``, counted per file and logged), in this order:

* ``underscore_number`` — a number with leading or trailing ``_`` (``"3_"``, ``"_40"``) is the
  number; a value of underscores only (``Changed_Credit_Limit`` ``"_"``) is missing (null).
* ``balance_sentinel`` — ``Monthly_Balance`` ``__-333333333333333333333333333__`` is null.
* ``invested_sentinel`` — ``Amount_invested_monthly`` ``__10000__`` is null.
* ``occupation_placeholder`` — ``Occupation`` ``_______`` (or empty) is the customer's most common
  occupation in the file, else ``unknown``.
* ``credit_mix_placeholder`` — ``Credit_Mix`` ``_`` (or empty) is the customer's most common credit
  mix in the file, else ``unknown``.
* ``payment_behaviour_placeholder`` — ``Payment_Behaviour`` ``!@9#%8`` (or empty) is ``unknown``.
* ``age_outlier`` — an age outside 14–100 (``-500``, ``8153``) or missing is the customer's most
  common valid age in the file.
* ``count_outlier`` — ``Num_Bank_Accounts``, ``Num_Credit_Card``, ``Interest_Rate``, ``Num_of_Loan``,
  ``Num_Credit_Inquiries`` or ``Num_of_Delayed_Payment`` outside its valid range (``COUNT_BOUNDS``:
  ``-100`` loans, ``1414`` accounts, ``5797`` % interest) is the customer's most common valid value in
  the file; without one the two nullable counts (inquiries, delayed payments) are null. A missing
  value of a nullable count stays null; of another count it is repaired the same way.
* ``income_outlier`` — an ``Annual_Income`` above 10 × the customer's most common income in the file
  (ties: the smallest), or missing, is that most common income.
* ``ssn_malformed`` — an ``SSN`` not of the form ``123-45-6789`` (``#F%$D@*&8``) is null.

Kept as they are: ``Payment_of_Min_Amount`` ``NM`` (a category of its own), a negative
``Delay_from_due_date`` (paid early), missing ``Monthly_Inhand_Salary``, ``Type_of_Loan``,
``Changed_Credit_Limit``, ``Amount_invested_monthly`` and ``Monthly_Balance`` (null).
``Credit_History_Age`` ``"22 Years and 1 Months"`` becomes ``credit_history_months`` 265 (missing:
null). Integer columns accept integral decimals (``"4.0"``).

Quarantine. A row no rule can clean is left out and counted by the first of these rules it breaks
(``QUARANTINE_RULES``), with a few example rows (personal data masked) in the file's
:class:`~flywheel.usecases.spec.Quarantine` report: ``missing_key``, ``bad_credit_score``,
``unknown_month``, ``unparseable_number``, ``unknown_category``, ``missing_value``,
``age_unrepairable``, ``count_unrepairable``. The platform rejects a file whose quarantined share
exceeds ``data.ingest.max_quarantine_share``.

Dates. The file has English month names (January…August) and no year. Going down each customer's rows
in file order, the first is in ``first_year`` and a month earlier than the customer's previous row's
month starts the next year (a customer's first row is taken to be in ``first_year``). A record is
dated the 1st of its month, 00:00 UTC (the published file has no statement day).

Personal data (``PII``): ``Name`` is dropped and ``SSN`` kept only as ``ssn_hash``, the salted hash of
:mod:`flywheel.data.pii`, before anything is stored or reported.
"""

from __future__ import annotations

import csv
import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flywheel.data.ingest import read_csv_header
from flywheel.data.pii import PiiRule, mask_records, mask_table
from flywheel.errors import DataError
from flywheel.usecases.credit import dirt, identity
from flywheel.usecases.credit.tables import (
    COUNT_BOUNDS,
    CREDIT_MIXES,
    CREDIT_RECORDS,
    CREDIT_SCORES,
    MAX_AGE,
    MIN_AGE,
    MIN_AMOUNT_ANSWERS,
    OCCUPATIONS,
    PAYMENT_BEHAVIOURS,
    UNKNOWN,
)
from flywheel.usecases.spec import Published, Quarantine

_logger = logging.getLogger(__name__)

COLUMNS = (
    "ID",
    "Customer_ID",
    "Month",
    "Name",
    "Age",
    "SSN",
    "Occupation",
    "Annual_Income",
    "Monthly_Inhand_Salary",
    "Num_Bank_Accounts",
    "Num_Credit_Card",
    "Interest_Rate",
    "Num_of_Loan",
    "Type_of_Loan",
    "Delay_from_due_date",
    "Num_of_Delayed_Payment",
    "Changed_Credit_Limit",
    "Num_Credit_Inquiries",
    "Credit_Mix",
    "Outstanding_Debt",
    "Credit_Utilization_Ratio",
    "Credit_History_Age",
    "Payment_of_Min_Amount",
    "Total_EMI_per_month",
    "Amount_invested_monthly",
    "Payment_Behaviour",
    "Monthly_Balance",
    "Credit_Score",
)
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
FIRST_YEAR = 2024
PII: dict[str, PiiRule] = {"Name": "drop", "SSN": "hash"}
BALANCE_SENTINEL = "__-333333333333333333333333333__"
INVESTED_SENTINEL = "__10000__"
OCCUPATION_PLACEHOLDER = "_______"
CREDIT_MIX_PLACEHOLDER = "_"
BEHAVIOUR_PLACEHOLDER = "!@9#%8"
INCOME_OUTLIER_FACTOR = 10
SSN_PATTERN = r"^\d{3}-\d{2}-\d{4}$"
HISTORY_PATTERN = r"^(\d+) Years and (\d+) Months$"
MAX_EXAMPLES = 3

# published numeric column → (lake column, integer?, nullable?)
NUMBERS = {
    "Age": ("age", True, False),
    "Annual_Income": ("annual_income", False, False),
    "Monthly_Inhand_Salary": ("monthly_inhand_salary", False, True),
    "Num_Bank_Accounts": ("num_bank_accounts", True, False),
    "Num_Credit_Card": ("num_credit_card", True, False),
    "Interest_Rate": ("interest_rate", True, False),
    "Num_of_Loan": ("num_of_loan", True, False),
    "Delay_from_due_date": ("delay_from_due_date", True, False),
    "Num_of_Delayed_Payment": ("num_of_delayed_payment", True, True),
    "Changed_Credit_Limit": ("changed_credit_limit", False, True),
    "Num_Credit_Inquiries": ("num_credit_inquiries", True, True),
    "Outstanding_Debt": ("outstanding_debt", False, False),
    "Credit_Utilization_Ratio": ("credit_utilization_ratio", False, False),
    "Total_EMI_per_month": ("total_emi_per_month", False, False),
    "Amount_invested_monthly": ("amount_invested_monthly", False, True),
    "Monthly_Balance": ("monthly_balance", False, True),
}
# Numbers a missing value cannot be repaired for (the others are repaired by a customer rule or null).
REQUIRED = ("Delay_from_due_date", "Outstanding_Debt", "Credit_Utilization_Ratio", "Total_EMI_per_month")

REPAIRS = {
    "underscore_number": "a number with leading or trailing '_' is the number; '_' alone is missing",
    "balance_sentinel": f"Monthly_Balance {BALANCE_SENTINEL} is null",
    "invested_sentinel": f"Amount_invested_monthly {INVESTED_SENTINEL} is null",
    "occupation_placeholder": f"Occupation {OCCUPATION_PLACEHOLDER} is the customer's most common one, "
    "else unknown",
    "credit_mix_placeholder": "Credit_Mix '_' is the customer's most common credit mix, else unknown",
    "payment_behaviour_placeholder": f"Payment_Behaviour {BEHAVIOUR_PLACEHOLDER} is unknown",
    "age_outlier": f"an age outside {MIN_AGE}-{MAX_AGE} is the customer's most common valid age",
    "count_outlier": "a count outside its valid range is the customer's most common valid value",
    "income_outlier": f"an income above {INCOME_OUTLIER_FACTOR} x the customer's usual one is the usual one",
    "ssn_malformed": "an SSN not of the form 123-45-6789 is null",
}
QUARANTINE_RULES = {
    "missing_key": "ID or Customer_ID is missing",
    "bad_credit_score": f"Credit_Score is missing or not one of {', '.join(CREDIT_SCORES)}",
    "unknown_month": "Month is not an English month name",
    "unparseable_number": "a number (or Credit_History_Age) does not parse once underscores are stripped",
    "unknown_category": "Occupation, Credit_Mix, Payment_of_Min_Amount or Payment_Behaviour is not a "
    "published value or placeholder",
    "missing_value": f"one of {', '.join(REQUIRED)} or Annual_Income is missing and cannot be repaired",
    "age_unrepairable": f"the age is outside {MIN_AGE}-{MAX_AGE} and the customer has no valid age in "
    "the file",
    "count_unrepairable": "a count is outside its range and the customer has no valid value in the file",
}


@dataclass
class Cleaned:
    """A published file's rows after conformance: lake tables, the quarantine report and how many
    values each repair rule changed."""

    published: Published
    repairs: dict[str, int] = field(default_factory=dict)


def read_header(path: Path) -> list[str]:
    """The file's header row, or a ``DataError`` when the file cannot be read as text."""
    return read_csv_header(path, "credit-score")


def is_published(path: Path, header: list[str]) -> bool:
    """Whether ``header`` is the published layout's; a ``DataError`` (one line) when it is close to it
    (at least half the columns) but not exactly it."""
    if tuple(header) == COLUMNS:
        return True
    if 2 * len(set(header) & set(COLUMNS)) < len(COLUMNS):
        return False
    missing = [name for name in COLUMNS if name not in header]
    unexpected = [name for name in header if name not in COLUMNS]
    detail = (
        f"missing columns {missing}, unexpected columns {unexpected}"
        if missing or unexpected
        else "the columns are not in the published order"
    )
    raise DataError(f"{path}: header is not the credit-score layout ({len(COLUMNS)} columns): {detail}")


def read_strings(path: Path) -> pa.Table:
    """Every column of a published file as strings; an empty field is null."""
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(COLUMNS, pa.string()), strings_can_be_null=True, null_values=[""]
    )
    try:
        return pacsv.read_csv(path, convert_options=convert)
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: not a readable credit-score CSV file ({error})") from None


def read_published(path: Path, first_year: int = FIRST_YEAR) -> Published | None:
    """A file of the published layout as ``credit_records`` rows and its quarantine report, or None
    when the file is not of this layout (it is then read as a table file).

    Args:
        path: A ``.csv`` or ``.csv.gz`` file.
        first_year: The year of each customer's first row.

    Raises:
        DataError: The header is close to the layout but not it, or the file is unreadable.
    """
    path = Path(path)
    if not path.name.endswith((".csv", ".csv.gz")) or not is_published(path, read_header(path)):
        return None
    cleaned = clean(read_strings(path), first_year)
    if any(cleaned.repairs.values()):
        repaired = ", ".join(f"{rule} {count}" for rule, count in cleaned.repairs.items() if count)
        _logger.info("%s: repaired values: %s", path, repaired)
    return cleaned.published


def _customer_mode(customers: pd.Series, values: pd.Series) -> pd.Series:
    """Each row's customer's most common non-null value of ``values`` (ties: the smallest), or NaN."""
    frame = pd.DataFrame({"c": customers, "v": values}).dropna()
    if frame.empty:
        return pd.Series(np.nan, index=values.index, dtype=object)
    counts = frame.groupby(["c", "v"], sort=False).size().reset_index(name="k")
    counts = counts.sort_values(["c", "k", "v"], ascending=[True, False, True], kind="stable")
    modes = counts.drop_duplicates("c").set_index("c")["v"]
    return customers.map(modes)


class _Rows:
    """The working state of one file's conformance: parsed columns, repairs and quarantine reasons."""

    def __init__(self, raw: pd.DataFrame):
        self.raw = raw
        self.customer = raw["Customer_ID"]
        self.broken = pd.Series(None, index=raw.index, dtype=object)  # the first rule a row breaks
        self.repaired_values: dict[str, list[pd.Series]] = {rule: [] for rule in REPAIRS}
        self.numbers: dict[str, pd.Series] = {}  # published name → parsed values (NaN: missing)
        self.out: dict[str, pd.Series] = {}  # lake column → cleaned values

    def quarantine(self, mask: pd.Series, rule: str) -> None:
        self.broken[mask & self.broken.isna()] = rule

    def repaired(self, mask: pd.Series, rule: str) -> None:
        self.repaired_values[rule].append(mask)

    @property
    def kept(self) -> pd.Series:
        return self.broken.isna()

    def repairs(self) -> dict[str, int]:
        """Values each repair rule changed in the rows kept."""
        kept = self.kept
        return {
            rule: sum(int((m & kept).sum()) for m in masks) for rule, masks in self.repaired_values.items()
        }


def clean(raw: pa.Table, first_year: int = FIRST_YEAR) -> Cleaned:
    """Conform a published file's string columns (:func:`read_strings`) by the module's rules.

    Returns:
        The ``credit_records`` rows kept, the quarantine report of the others (personal data masked)
        and the count of values each repair changed.
    """
    rows = _Rows(raw.to_pandas())
    _keys(rows)
    for name in NUMBERS:
        rows.numbers[name] = _number(rows, name)
    _credit_history(rows)
    _categories(rows)
    _income_and_required(rows)
    _age(rows)
    for name in COUNT_BOUNDS:
        _count(rows, name)
    _ssn(rows)
    dates = _record_dates(rows, first_year)
    table = _table(rows, dates)
    return Cleaned(Published({"credit_records": table}, _report(rows)), rows.repairs())


def _keys(rows: _Rows) -> None:
    raw = rows.raw
    blank = [raw[name].isna() | (raw[name].str.strip() == "") for name in ("ID", "Customer_ID")]
    rows.quarantine(blank[0] | blank[1], "missing_key")
    rows.quarantine(~raw["Credit_Score"].isin(CREDIT_SCORES), "bad_credit_score")
    rows.quarantine(~raw["Month"].isin(MONTH_NAMES), "unknown_month")


def _number(rows: _Rows, name: str) -> pd.Series:
    """A numeric column parsed after the sentinel and underscore rules; unparseable → quarantine."""
    text = rows.raw[name]
    sentinels = {"Monthly_Balance": (BALANCE_SENTINEL, "balance_sentinel")}
    sentinels["Amount_invested_monthly"] = (INVESTED_SENTINEL, "invested_sentinel")
    if name in sentinels:
        value, rule = sentinels[name]
        hit = text == value
        rows.repaired(hit, rule)
        text = text.mask(hit)
    stripped = text.str.strip("_")
    rows.repaired(text.notna() & (stripped != text), "underscore_number")
    stripped = stripped.mask(stripped == "")
    parsed = pd.to_numeric(stripped, errors="coerce").astype(float)
    bad = (stripped.notna() & parsed.isna()) | np.isinf(parsed)
    if NUMBERS[name][1]:
        bad |= parsed.notna() & (parsed != np.floor(parsed))
    rows.quarantine(bad, "unparseable_number")
    return parsed.mask(bad)


def _credit_history(rows: _Rows) -> None:
    text = rows.raw["Credit_History_Age"]
    parts = text.str.extract(HISTORY_PATTERN)
    months = pd.to_numeric(parts[0]) * 12 + pd.to_numeric(parts[1])
    rows.quarantine(text.notna() & months.isna(), "unparseable_number")
    rows.out["credit_history_months"] = months


def _placeholder(rows: _Rows, name: str, placeholder: str, vocabulary: tuple[str, ...], rule: str) -> None:
    """A category whose placeholder (or a missing value) is the customer's most common value in the
    file, else ``unknown``; a value outside the vocabulary is quarantined."""
    text = rows.raw[name]
    missing = text.isna() | (text == placeholder)
    rows.quarantine(~missing & ~text.isin(vocabulary), "unknown_category")
    known = text.where(text.isin(vocabulary))
    rows.repaired(missing, rule)
    rows.out[name.lower()] = known.where(~missing, _customer_mode(rows.customer, known)).fillna(UNKNOWN)


def _categories(rows: _Rows) -> None:
    raw = rows.raw
    _placeholder(rows, "Occupation", OCCUPATION_PLACEHOLDER, OCCUPATIONS, "occupation_placeholder")
    _placeholder(rows, "Credit_Mix", CREDIT_MIX_PLACEHOLDER, CREDIT_MIXES, "credit_mix_placeholder")
    behaviour = raw["Payment_Behaviour"]
    missing = behaviour.isna() | (behaviour == BEHAVIOUR_PLACEHOLDER)
    rows.quarantine(~missing & ~behaviour.isin(PAYMENT_BEHAVIOURS), "unknown_category")
    rows.repaired(missing, "payment_behaviour_placeholder")
    rows.out["payment_behaviour"] = behaviour.where(~missing, UNKNOWN)
    minimum = raw["Payment_of_Min_Amount"]
    rows.quarantine(~minimum.isin(MIN_AMOUNT_ANSWERS), "unknown_category")
    rows.out["payment_of_min_amount"] = minimum


def _income_and_required(rows: _Rows) -> None:
    for name in REQUIRED:
        rows.quarantine(rows.numbers[name].isna(), "missing_value")
    income = rows.numbers["Annual_Income"]
    usual = _customer_mode(rows.customer, income).astype(float)
    outlier = income.isna() | (income > INCOME_OUTLIER_FACTOR * usual)
    rows.repaired(outlier & usual.notna(), "income_outlier")
    rows.quarantine(outlier & usual.isna(), "missing_value")
    rows.out["annual_income"] = income.where(~outlier, usual)


def _age(rows: _Rows) -> None:
    age = rows.numbers["Age"]
    valid = age.between(MIN_AGE, MAX_AGE)
    mode = _customer_mode(rows.customer, age.where(valid)).astype(float)
    rows.repaired(~valid & mode.notna(), "age_outlier")
    rows.quarantine(~valid & mode.isna(), "age_unrepairable")
    rows.out["age"] = age.where(valid, mode)


def _count(rows: _Rows, name: str) -> None:
    """A count outside its valid range is the customer's most common valid value; without one it is
    null (a nullable count) or the row is quarantined."""
    column, _, nullable = NUMBERS[name]
    value = rows.numbers[name]
    low, high = COUNT_BOUNDS[name]
    valid = value.between(low, high)
    outlier = ~valid & value.notna() if nullable else ~valid
    mode = _customer_mode(rows.customer, value.where(valid)).astype(float)
    rows.repaired(outlier & mode.notna(), "count_outlier")
    if not nullable:
        rows.quarantine(outlier & mode.isna(), "count_unrepairable")
    rows.out[column] = value.where(~outlier, mode)


def _ssn(rows: _Rows) -> None:
    ssn = rows.raw["SSN"]
    well_formed = ssn.str.match(SSN_PATTERN).fillna(False).astype(bool)
    rows.repaired(ssn.notna() & ~well_formed, "ssn_malformed")
    masked = mask_table(pa.table({"SSN": pa.array(ssn.where(well_formed), pa.string())}), PII)
    rows.out["ssn_hash"] = masked.column("SSN_hash").to_pandas()


def _record_dates(rows: _Rows, first_year: int) -> pd.Series:
    """The 1st of each row's month, the year walked per customer (see the module docstring)."""
    month = rows.raw["Month"].map({name: i + 1 for i, name in enumerate(MONTH_NAMES)})
    known = month.notna() & rows.customer.notna()
    months, customers = month[known].astype(int), rows.customer[known]
    previous = months.groupby(customers, sort=False).shift()
    rolled = (months < previous).astype(int).groupby(customers, sort=False).cumsum()
    dates = pd.to_datetime(pd.DataFrame({"year": first_year + rolled, "month": months, "day": 1}), utc=True)
    return dates.reindex(rows.raw.index)


INTEGERS = [spec.name for spec in CREDIT_RECORDS.columns if spec.type == pa.int64()]


def _table(rows: _Rows, dates: pd.Series) -> pa.Table:
    kept = rows.kept
    raw = rows.raw[kept]
    columns: dict[str, Any] = {
        "id": raw["ID"],
        "customer_id": raw["Customer_ID"],
        "record_date": dates[kept],
        "type_of_loan": raw["Type_of_Loan"],
        "credit_score": raw["Credit_Score"],
    }
    for published, (column, _, _) in NUMBERS.items():
        columns[column] = rows.out.get(column, rows.numbers[published])[kept]
    columns.update({name: values[kept] for name, values in rows.out.items() if name not in columns})
    frame = pd.DataFrame({name: columns[name] for name in CREDIT_RECORDS.column_names})
    for name in INTEGERS:
        frame[name] = frame[name].astype("Int64")
    return pa.Table.from_pandas(frame, schema=CREDIT_RECORDS.arrow_schema, preserve_index=False)


def _report(rows: _Rows) -> Quarantine:
    """The quarantine report: counts per rule, a few example rows (personal data masked) with their
    1-based data row number, and every rule's description."""
    counts, examples = {}, {}
    for rule in QUARANTINE_RULES:
        hit = rows.broken == rule
        if not hit.any():
            continue
        counts[rule] = int(hit.sum())
        sample = rows.raw[hit].head(MAX_EXAMPLES)
        records = [
            {"row": int(index) + 1, **record}
            for index, record in zip(sample.index, sample.to_dict("records"), strict=True)
        ]
        examples[rule] = mask_records(records, PII)
    return Quarantine(len(rows.raw), counts, examples, dict(QUARANTINE_RULES), rows.repairs(), dict(REPAIRS))


def _text(column: pa.ChunkedArray) -> np.ndarray:
    """A column as published strings (numbers as Python prints them), None where null."""
    return np.array(column.cast(pa.string()).to_pylist(), dtype=object)


def to_published(records: pa.Table) -> dict[str, np.ndarray]:
    """``credit_records`` rows as the published layout's string columns, customer by customer and in
    time order within a customer (as the public file is). The name and SSN derive from the customer id
    (:mod:`flywheel.usecases.credit.identity`): the lake holds neither."""
    order = pc.sort_indices(records, [("customer_id", "ascending"), ("record_date", "ascending")])
    records = records.take(order)
    customers = records.column("customer_id").to_pylist()
    people = {c: (identity.name_of(c), identity.ssn_of(c)) for c in set(customers)}
    months = pc.month(records.column("record_date")).to_numpy()
    history = records.column("credit_history_months").to_pylist()
    columns = {
        "ID": _text(records.column("id")),
        "Customer_ID": np.array(customers, dtype=object),
        "Month": np.array(MONTH_NAMES, dtype=object)[months - 1],
        "Name": np.array([people[c][0] for c in customers], dtype=object),
        "SSN": np.array([people[c][1] for c in customers], dtype=object),
        "Credit_History_Age": np.array(
            [None if m is None else f"{m // 12} Years and {m % 12} Months" for m in history], dtype=object
        ),
    }
    lake_names = {published: column for published, (column, _, _) in NUMBERS.items()}
    lake_names.update({name: name.lower() for name in ("Occupation", "Type_of_Loan", "Credit_Mix")})
    lake_names.update({name: name.lower() for name in ("Payment_of_Min_Amount", "Payment_Behaviour")})
    lake_names["Credit_Score"] = "credit_score"
    for published, column in lake_names.items():
        columns[published] = _text(records.column(column))
    return {name: columns[name] for name in COLUMNS}


def write_published(
    tables: dict[str, pa.Table] | pa.Table,
    path: Path,
    dirty: bool | dict[str, float] = False,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``credit_records`` rows in the published layout (``.gz``: gzip-compressed), optionally
    with the published kinds of dirt injected (:mod:`flywheel.usecases.credit.dirt`).

    Args:
        tables: Lake tables holding ``credit_records`` (or that table).
        path: Where to write.
        dirty: False: clean; True: the published kinds at their documented rates; a mapping: those
            rates with some kinds' overridden (e.g. ``{"unknown_month": 0.01}``).
        seed: Seeds the dirt.

    Returns:
        What was injected, per kind of dirt (empty when clean).

    Raises:
        DataError: ``dirty`` names an unknown kind of dirt.
    """
    records = tables if isinstance(tables, pa.Table) else tables["credit_records"]
    columns = to_published(records)
    chosen = dirt.rates(dirty)
    injected = dirt.inject(columns, columns["Customer_ID"].copy(), chosen, seed) if chosen else {}
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(zip(*(columns[name] for name in COLUMNS), strict=True))
    return injected
