"""The credit-score use case's raw lake table: ``credit_records``, one monthly record per customer.

A record is a customer's monthly statement in the layout of the public Kaggle "credit score
classification" data (``train.csv``), cleaned: snake_case names, proper types, placeholders resolved
(see :mod:`flywheel.usecases.credit.published` for the reader's rules). ``record_date`` is the
statement date of the month; ``credit_score`` is the label (Good, Standard or Poor). Personal data is
not stored: the customer's name is dropped and the SSN kept only as ``ssn_hash`` (a salted hash,
null when the published SSN was malformed).

The bounds are those the published data's valid values satisfy, with some room: values outside them
are the file's known outliers, which the reader repairs or quarantines before they reach the lake.
"""

from __future__ import annotations

import pyarrow as pa

from flywheel.data.schema import TIMESTAMP, ColumnSpec, TableSpec

OCCUPATIONS = (
    "Accountant",
    "Architect",
    "Developer",
    "Doctor",
    "Engineer",
    "Entrepreneur",
    "Journalist",
    "Lawyer",
    "Manager",
    "Mechanic",
    "Media_Manager",
    "Musician",
    "Scientist",
    "Teacher",
    "Writer",
)
UNKNOWN = "unknown"
CREDIT_MIXES = ("Bad", "Standard", "Good")
MIN_AMOUNT_ANSWERS = ("No", "Yes", "NM")  # NM: not mentioned, a category of its own in the published data
PAYMENT_BEHAVIOURS = (
    "Low_spent_Small_value_payments",
    "Low_spent_Medium_value_payments",
    "Low_spent_Large_value_payments",
    "High_spent_Small_value_payments",
    "High_spent_Medium_value_payments",
    "High_spent_Large_value_payments",
)
LOAN_TYPES = (
    "Auto Loan",
    "Credit-Builder Loan",
    "Debt Consolidation Loan",
    "Home Equity Loan",
    "Mortgage Loan",
    "Not Specified",
    "Payday Loan",
    "Personal Loan",
    "Student Loan",
)
CREDIT_SCORES = ("Poor", "Standard", "Good")  # in the order of the label's integer codes 0, 1, 2
MIN_AGE, MAX_AGE = 14, 100

# Valid ranges of the count columns, published name → (low, high): the published data's valid values
# lie well inside them (e.g. 0–11 bank accounts, 1–34 % interest); its outliers (−100 loans, 1,798
# accounts, 5,797 % interest) lie outside and are repaired by the reader.
COUNT_BOUNDS = {
    "Num_Bank_Accounts": (0, 20),
    "Num_Credit_Card": (0, 20),
    "Interest_Rate": (0, 50),
    "Num_of_Loan": (0, 20),
    "Num_Credit_Inquiries": (0, 30),
    "Num_of_Delayed_Payment": (0, 40),
}


def _c(name: str, type_: pa.DataType, **kw: object) -> ColumnSpec:
    return ColumnSpec(name, type_, **kw)  # type: ignore[arg-type]


def _count(name: str, published: str, nullable: bool = False) -> ColumnSpec:
    low, high = COUNT_BOUNDS[published]
    return _c(name, pa.int64(), nullable=nullable, min_value=low, max_value=high)


CREDIT_RECORDS = TableSpec(
    "credit_records",
    "id",
    (
        _c("id", pa.string()),  # the published ID, e.g. 0x1602
        _c("customer_id", pa.string()),  # e.g. CUS_0xd40
        _c("record_date", TIMESTAMP),  # the month's statement date
        _c("ssn_hash", pa.string(), nullable=True),  # salted hash of the SSN; null: malformed
        _c("age", pa.int64(), min_value=MIN_AGE, max_value=MAX_AGE),
        _c("occupation", pa.string(), allowed=(*OCCUPATIONS, UNKNOWN)),
        _c("annual_income", pa.float64(), min_value=0),
        _c("monthly_inhand_salary", pa.float64(), nullable=True, min_value=0),
        _count("num_bank_accounts", "Num_Bank_Accounts"),
        _count("num_credit_card", "Num_Credit_Card"),
        _count("interest_rate", "Interest_Rate"),
        _count("num_of_loan", "Num_of_Loan"),
        _c("type_of_loan", pa.string(), nullable=True),  # e.g. "Auto Loan, and Payday Loan"; null: none
        _c("delay_from_due_date", pa.int64(), min_value=-31, max_value=365),  # days; negative: early
        _count("num_of_delayed_payment", "Num_of_Delayed_Payment", nullable=True),
        _c("changed_credit_limit", pa.float64(), nullable=True, min_value=-100, max_value=100),  # %
        _count("num_credit_inquiries", "Num_Credit_Inquiries", nullable=True),
        _c("credit_mix", pa.string(), allowed=(*CREDIT_MIXES, UNKNOWN)),
        _c("outstanding_debt", pa.float64(), min_value=0),
        _c("credit_utilization_ratio", pa.float64(), min_value=0, max_value=100),  # %
        _c("credit_history_months", pa.int64(), nullable=True, min_value=0, max_value=1200),
        _c("payment_of_min_amount", pa.string(), allowed=MIN_AMOUNT_ANSWERS),
        _c("total_emi_per_month", pa.float64(), min_value=0),
        _c("amount_invested_monthly", pa.float64(), nullable=True, min_value=0),
        _c("payment_behaviour", pa.string(), allowed=(*PAYMENT_BEHAVIOURS, UNKNOWN)),
        _c("monthly_balance", pa.float64(), nullable=True),
        _c("credit_score", pa.string(), allowed=CREDIT_SCORES),
    ),
    time_column="record_date",
)

TABLES: dict[str, TableSpec] = {"credit_records": CREDIT_RECORDS}
TABLE_ORDER = ("credit_records",)
