"""The bank-marketing use case's raw tables: phone ``contacts`` and the published ``macro`` indicators.

``contacts`` holds one row per phone contact of a term-deposit campaign, in the union of the two UCI
Bank Marketing layouts (Moro, Cortez & Rita 2014): ``bank-full.csv`` brings ``balance`` and ``day``,
``bank-additional-full.csv`` brings ``day_of_week`` and five socio-economic indicators (published with
dotted names, here with underscores). A layout's missing columns are null; ``unknown`` is a category,
never null. ``contact_at`` is the reconstructed (UCI) or simulated (generator) moment of the contact.

``macro`` holds the indicators as published at ``published_at``: a contact may only use indicators
published at or before its ``contact_at`` (``RELATION_CHECKS`` holds the cross-table checks).
"""

from __future__ import annotations

import pyarrow as pa

from flywheel.data.schema import TIMESTAMP, ColumnSpec, TableSpec

JOBS = (
    "admin.",
    "blue-collar",
    "entrepreneur",
    "housemaid",
    "management",
    "retired",
    "self-employed",
    "services",
    "student",
    "technician",
    "unemployed",
    "unknown",
)
MARITAL = ("divorced", "married", "single", "unknown")
EDUCATION_FULL = ("primary", "secondary", "tertiary", "unknown")
EDUCATION_ADDITIONAL = (
    "basic.4y",
    "basic.6y",
    "basic.9y",
    "high.school",
    "illiterate",
    "professional.course",
    "university.degree",
    "unknown",
)
EDUCATION = (*EDUCATION_FULL[:-1], *EDUCATION_ADDITIONAL)
NO_YES_UNKNOWN = ("no", "yes", "unknown")
CONTACT_CHANNELS = ("cellular", "telephone", "unknown")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS_OF_WEEK = ("mon", "tue", "wed", "thu", "fri")
POUTCOME_FULL = ("failure", "other", "success", "unknown")
POUTCOME_ADDITIONAL = ("failure", "nonexistent", "success")
POUTCOME = ("failure", "other", "success", "unknown", "nonexistent")
OUTCOMES = ("yes", "no")
INDICATORS = ("emp_var_rate", "cons_price_idx", "cons_conf_idx", "euribor3m", "nr_employed")


def _c(name: str, type_: pa.DataType, **kw: object) -> ColumnSpec:
    return ColumnSpec(name, type_, **kw)  # type: ignore[arg-type]


CONTACTS = TableSpec(
    "contacts",
    "contact_id",
    (
        _c("contact_id", pa.int64()),
        _c("client_id", pa.int64(), nullable=True),  # null in the UCI files: they carry no client key
        _c("contact_at", TIMESTAMP),
        _c("age", pa.int64(), min_value=17, max_value=100),
        _c("job", pa.string(), allowed=JOBS),
        _c("marital", pa.string(), allowed=MARITAL),
        _c("education", pa.string(), allowed=EDUCATION),
        _c("default", pa.string(), allowed=NO_YES_UNKNOWN),
        _c("balance", pa.float64(), nullable=True),
        _c("housing", pa.string(), allowed=NO_YES_UNKNOWN),
        _c("loan", pa.string(), allowed=NO_YES_UNKNOWN),
        _c("contact", pa.string(), allowed=CONTACT_CHANNELS),
        _c("month", pa.string(), allowed=MONTHS),
        _c("day", pa.int64(), nullable=True, min_value=1, max_value=31),
        _c("day_of_week", pa.string(), nullable=True, allowed=DAYS_OF_WEEK),
        # Known only once the call has ended, so it leaks the outcome: kept for analysis, never an input.
        _c("duration", pa.int64(), min_value=0),
        _c("campaign", pa.int64(), min_value=1),
        _c("pdays", pa.int64(), nullable=True, min_value=0),  # null: not contacted in an earlier campaign
        _c("previous", pa.int64(), min_value=0),
        _c("poutcome", pa.string(), allowed=POUTCOME),
        *(_c(name, pa.float64(), nullable=True) for name in INDICATORS),
        _c("y", pa.string(), allowed=OUTCOMES),
    ),
    time_column="contact_at",
)

MACRO = TableSpec(
    "macro",
    "published_at",
    (_c("published_at", TIMESTAMP), *(_c(name, pa.float64()) for name in INDICATORS)),
    time_column="published_at",
)

TABLES: dict[str, TableSpec] = {"contacts": CONTACTS, "macro": MACRO}

# Dependency order: contacts refer to the indicators published before them.
TABLE_ORDER = ("macro", "contacts")

# Cross-table checks in the shape of the platform's validation: (check, table, column, message, SQL
# selecting the failing rows). ``<table>_batch`` holds the batch's rows, ``<table>_all`` batch + lake.
RELATION_CHECKS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "macro_missing",
        "contacts",
        "contact_at",
        "a contact carrying indicators needs a macro row published at or before its contact_at",
        "SELECT c.* FROM contacts_batch c WHERE c.emp_var_rate IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM macro_all m WHERE m.published_at <= c.contact_at)",
    ),
    (
        "pdays_without_previous",
        "contacts",
        "pdays",
        "pdays (days since an earlier campaign's contact) requires previous > 0",
        "SELECT * FROM contacts_batch WHERE pdays IS NOT NULL AND previous <= 0",
    ),
)
