"""The published data's kinds of dirt, injected into a file's string columns at documented rates.

:func:`~flywheel.usecases.credit.published.write_published` writes lake rows back in the published
layout; with ``dirty`` it injects, deterministically by seed, the dirt the public file has (named
after the reader rule that repairs it) and, on request, dirt the reader must quarantine. Rates are
shares of rows (of customers for the ``*_unrepairable`` kinds), close to the public file's:

* ``underscore_number`` 0.05 — a trailing ``_`` on one of Age, Annual_Income, Num_of_Loan,
  Num_of_Delayed_Payment, Outstanding_Debt;
* ``balance_sentinel`` 0.01 — ``Monthly_Balance`` ``__-333333333333333333333333333__``;
* ``invested_sentinel`` 0.043 — ``Amount_invested_monthly`` ``__10000__``;
* ``occupation_placeholder`` 0.07 — ``Occupation`` ``_______``;
* ``credit_mix_placeholder`` 0.2 — ``Credit_Mix`` ``_``;
* ``payment_behaviour_placeholder`` 0.076 — ``Payment_Behaviour`` ``!@9#%8``;
* ``age_outlier`` 0.028 — an age of −500 or 101–8,700;
* ``count_outlier`` 0.02 per count column — −100 or an absurd count (up to 1,800);
* ``income_outlier`` 0.01 — an income 20–500 × the true one;
* ``ssn_malformed`` 0.056 — ``SSN`` ``#F%$D@*&8``;
* ``missing_optional`` 0.05 per nullable column — an empty value (``_`` for Changed_Credit_Limit);
* the quarantine kinds, 0 unless asked for: ``missing_key`` (empty ID), ``bad_credit_score`` (empty),
  ``unknown_month`` (``Janvier``), ``unparseable_number`` (Outstanding_Debt ``1,183.21``),
  ``unknown_category`` (Payment_of_Min_Amount ``Maybe``), ``missing_value`` (empty
  Total_EMI_per_month), ``age_unrepairable`` (every age of a customer −500) and
  ``count_unrepairable`` (every Num_Bank_Accounts of a customer 1414).

Repairable dirt never makes a row unrepairable: each customer keeps at least one clean age, income
and non-nullable count. Quarantine kinds go to disjoint rows (the ``*_unrepairable`` kinds to whole
customers, chosen first), so the reader's quarantine counts equal the injected counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flywheel.errors import DataError
from flywheel.usecases.credit.tables import COUNT_BOUNDS

REPAIRABLE = {
    "underscore_number": 0.05,
    "balance_sentinel": 0.01,
    "invested_sentinel": 0.043,
    "occupation_placeholder": 0.07,
    "credit_mix_placeholder": 0.2,
    "payment_behaviour_placeholder": 0.076,
    "age_outlier": 0.028,
    "count_outlier": 0.02,
    "income_outlier": 0.01,
    "ssn_malformed": 0.056,
    "missing_optional": 0.05,
}
QUARANTINED = {
    "missing_key": 0.0,
    "bad_credit_score": 0.0,
    "unknown_month": 0.0,
    "unparseable_number": 0.0,
    "unknown_category": 0.0,
    "missing_value": 0.0,
    "age_unrepairable": 0.0,
    "count_unrepairable": 0.0,
}
DIRT_RATES = {**REPAIRABLE, **QUARANTINED}
UNDERSCORED = ("Age", "Annual_Income", "Num_of_Loan", "Num_of_Delayed_Payment", "Outstanding_Debt")
OPTIONAL = (
    "Monthly_Inhand_Salary",
    "Num_of_Delayed_Payment",
    "Num_Credit_Inquiries",
    "Credit_History_Age",
    "Amount_invested_monthly",
    "Monthly_Balance",
    "Changed_Credit_Limit",
)
NULLABLE_COUNTS = ("Num_of_Delayed_Payment", "Num_Credit_Inquiries")
# what a quarantine kind writes, in which column, on its rows
QUARANTINE_VALUES = {
    "missing_key": ("ID", None),
    "bad_credit_score": ("Credit_Score", None),
    "unknown_month": ("Month", "Janvier"),
    "unparseable_number": ("Outstanding_Debt", "1,183.21"),
    "unknown_category": ("Payment_of_Min_Amount", "Maybe"),
    "missing_value": ("Total_EMI_per_month", None),
}
Columns = dict[str, np.ndarray]  # published name → object array of strings (None: empty)


def rates(dirty: bool | Mapping[str, float]) -> dict[str, float]:
    """The rates ``dirty`` asks for: none, the defaults, or the defaults with some overridden."""
    if dirty is False:
        return {}
    chosen = dict(DIRT_RATES)
    if isinstance(dirty, Mapping):
        unknown = sorted(set(dirty) - set(DIRT_RATES))
        if unknown:
            raise DataError(f"unknown kind(s) of dirt {unknown}; expected some of {', '.join(DIRT_RATES)}")
        chosen.update(dirty)
    return chosen


def _keep_one(mask: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``mask`` with each customer whose rows it marks all unmarked on their first row."""
    rows = np.bincount(codes)
    marked = np.bincount(codes, weights=mask.astype(float), minlength=rows.size)
    _, first = np.unique(codes, return_index=True)
    mask = mask.copy()
    mask[first[marked == rows]] = False
    return mask


def _rows(free: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``rate`` share of the ``free`` rows (exactly binomial(free, rate) of them)."""
    candidates = np.flatnonzero(free)
    chosen = np.zeros(free.size, dtype=bool)
    chosen[rng.choice(candidates, rng.binomial(candidates.size, rate), replace=False)] = True
    return chosen


def _set(columns: Columns, name: str, mask: np.ndarray, values: object) -> int:
    columns[name] = np.where(mask, values, columns[name])
    return int(mask.sum())


def _quarantined(columns: Columns, codes: np.ndarray, chosen: dict[str, float], rng: np.random.Generator):
    """Quarantine kinds on disjoint rows: whole customers first, then single rows."""
    counts, used = {}, np.zeros(codes.size, dtype=bool)
    customers = np.zeros(codes.max(initial=-1) + 1, dtype=bool)
    for kind, column, value in (
        ("age_unrepairable", "Age", "-500"),
        ("count_unrepairable", "Num_Bank_Accounts", "1414"),
    ):
        free = ~customers
        picked = _rows(free, chosen.get(kind, 0.0), rng) & free
        customers |= picked
        mask = picked[codes]
        counts[kind] = _set(columns, column, mask, value)
        used |= mask
    for kind, (column, value) in QUARANTINE_VALUES.items():
        mask = _rows(~used, chosen.get(kind, 0.0), rng)
        counts[kind] = _set(columns, column, mask, value)
        used |= mask
    return counts, used


def _numbers(columns: Columns, codes: np.ndarray, chosen: dict[str, float], rng: np.random.Generator):
    """Outliers, sentinels and underscores in the numeric columns."""
    n, counts = codes.size, {}
    ages = _keep_one(rng.random(n) < chosen["age_outlier"], codes)
    outliers = np.where(rng.random(n) < 0.3, -500, rng.integers(101, 8_700, n)).astype(str)
    counts["age_outlier"] = _set(columns, "Age", ages & (columns["Age"] != None), outliers)  # noqa: E711
    counts["count_outlier"] = 0
    for name, (_, high) in COUNT_BOUNDS.items():
        mask = (rng.random(n) < chosen["count_outlier"]) & (columns[name] != None)  # noqa: E711
        if name not in NULLABLE_COUNTS:
            mask = _keep_one(mask, codes)
        absurd = np.where(rng.random(n) < 0.2, -100, rng.integers(high + 1, 1_800, n)).astype(str)
        counts["count_outlier"] += _set(columns, name, mask, absurd)
    income = _keep_one(rng.random(n) < chosen["income_outlier"], codes)
    inflated = np.array(
        [
            f"{float(v) * f:.2f}" if v is not None else None
            for v, f in zip(columns["Annual_Income"], rng.uniform(20, 500, n), strict=True)
        ],
        dtype=object,
    )
    counts["income_outlier"] = _set(columns, "Annual_Income", income, inflated)
    counts["balance_sentinel"] = _set(
        columns,
        "Monthly_Balance",
        rng.random(n) < chosen["balance_sentinel"],
        "__-333333333333333333333333333__",
    )
    counts["invested_sentinel"] = _set(
        columns, "Amount_invested_monthly", rng.random(n) < chosen["invested_sentinel"], "__10000__"
    )
    which = rng.integers(0, len(UNDERSCORED), n)
    picked = rng.random(n) < chosen["underscore_number"]
    counts["underscore_number"] = 0
    for i, name in enumerate(UNDERSCORED):
        mask = picked & (which == i) & (columns[name] != None)  # noqa: E711
        underscored = np.array([f"{v}_" if v is not None else None for v in columns[name]], dtype=object)
        counts["underscore_number"] += _set(columns, name, mask, underscored)
    return counts


def inject(columns: Columns, customers: np.ndarray, chosen: dict[str, float], seed: int) -> dict[str, int]:
    """Inject the ``chosen`` kinds of dirt into ``columns`` (in place). Returns values (rows for the
    quarantine kinds) changed per kind."""
    rng = np.random.default_rng([seed, 14])
    n = customers.size
    _, codes = np.unique(customers, return_inverse=True)
    counts, _ = _quarantined(columns, codes, chosen, rng)
    counts.update(_numbers(columns, codes, chosen, rng))
    for kind, column, value in (
        ("occupation_placeholder", "Occupation", "_______"),
        ("credit_mix_placeholder", "Credit_Mix", "_"),
        ("payment_behaviour_placeholder", "Payment_Behaviour", "!@9#%8"),
        ("ssn_malformed", "SSN", "#F%$D@*&8"),
    ):
        counts[kind] = _set(columns, column, rng.random(n) < chosen[kind], value)
    counts["missing_optional"] = 0
    for name in OPTIONAL:
        mask = (rng.random(n) < chosen["missing_optional"]) & (columns[name] != None)  # noqa: E711
        counts["missing_optional"] += _set(
            columns, name, mask, "_" if name == "Changed_Credit_Limit" else None
        )
    return counts
