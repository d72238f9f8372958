"""The credit generator's customers: who they are (stable attributes) and their latent state.

A customer has stable attributes drawn once (birth date, occupation, annual income, a billing day
1–28 on which each monthly statement is dated, when their credit history began, bank accounts, cards
and interest rate) and monthly evolving ones carried between statements (loans, outstanding debt,
delayed payments, credit inquiries). ``quality`` is the latent credit quality: standard normal over
the population, autocorrelated month to month around the customer's ``quality_mean``; ``stress`` is a
persisting economic strain (a recession raises it). The whole state is one Arrow table
(``STATE_SCHEMA``), stored under ``lake/sim/customer_state`` between simulated batches.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flywheel.usecases.credit.tables import LOAN_TYPES, OCCUPATIONS

DAYS_PER_YEAR = 365.25
MAX_LOANS = 9
MAX_HISTORY_MONTHS = 404  # the longest credit history in the published data (33 years 8 months)

STATE_SCHEMA = pa.schema(
    [
        pa.field("customer", pa.int64(), nullable=False),  # the number in CUS_0x<hex>
        pa.field("segment", pa.int8(), nullable=False),  # 0: the first customers, 1: new_segment drift
        pa.field("joined_on", pa.int64(), nullable=False),  # days since 1970-01-01: first statement on/after
        pa.field("born_on", pa.int64(), nullable=False),  # days since 1970-01-01
        pa.field("occupation", pa.int8(), nullable=False),  # index into OCCUPATIONS
        pa.field("annual_income", pa.float64(), nullable=False),
        pa.field("inhand_share", pa.float64(), nullable=False),  # in-hand monthly salary / (income / 12)
        pa.field("billing_day", pa.int8(), nullable=False),  # 1–28
        pa.field("history_start", pa.int64(), nullable=False),  # year*12 + month − 1 of the first credit
        pa.field("num_bank_accounts", pa.int64(), nullable=False),
        pa.field("num_credit_card", pa.int64(), nullable=False),
        pa.field("interest_rate", pa.int64(), nullable=False),
        pa.field("num_of_loan", pa.int64(), nullable=False),
        pa.field("loan_types", pa.int64(), nullable=False),  # MAX_LOANS base-9 digits into LOAN_TYPES
        pa.field("outstanding_debt", pa.float64(), nullable=False),
        pa.field("delayed_payments", pa.int64(), nullable=False),
        pa.field("inquiries", pa.int64(), nullable=False),
        pa.field("invest_share", pa.float64(), nullable=False),  # of the in-hand salary
        pa.field("high_spender", pa.bool_(), nullable=False),  # the usual spending level
        pa.field("payment_size", pa.int8(), nullable=False),  # the usual payment value: 0 small … 2 large
        pa.field("quality", pa.float64(), nullable=False),  # latent credit quality, last statement's
        pa.field("quality_mean", pa.float64(), nullable=False),  # what quality reverts to
        pa.field("stress", pa.float64(), nullable=False),  # persisting economic strain (recession)
        pa.field("last_month", pa.int64(), nullable=False),  # year*12 + month − 1 of the last statement
    ]
)


def _rounded(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(np.round(values), low, high).astype(np.int64)


def pack_loan_types(codes: np.ndarray) -> np.ndarray:
    """Rows of MAX_LOANS codes into LOAN_TYPES, packed as base-9 integers (first loan lowest)."""
    return (codes * (len(LOAN_TYPES) ** np.arange(MAX_LOANS))).sum(axis=1).astype(np.int64)


def new_customers(
    n: int, first: int, on_day: int, month: int, rng: np.random.Generator, thin_file: bool = False
) -> dict[str, np.ndarray]:
    """``n`` customers numbered from ``first`` who join on ``on_day`` (days since epoch), in ``month``
    (year*12 + month − 1). ``thin_file``: the ``new_segment`` drift's young customers with little
    credit history (few accounts and loans, a short history, a lower and less certain quality)."""
    quality = rng.normal(-0.35 if thin_file else 0.0, 1.0, n)
    age = rng.uniform(18, 26, n) if thin_file else np.clip(rng.normal(33.3, 10.8, n), 14, 56)
    income = np.exp(rng.normal(10.55 + 0.2 * quality - (0.5 if thin_file else 0.0), 0.62))
    history = np.clip(rng.normal(221, 95, n) + 4 * (age - 33), 1, MAX_HISTORY_MONTHS)
    history = np.minimum(history, np.maximum((age - 14) * 12, 1))
    if thin_file:
        history = rng.uniform(0, 24, n)
    loans = _rounded(3.5 - 0.7 * quality + rng.normal(0, 2, n), 0, MAX_LOANS)
    accounts = _rounded(5.4 - 1.3 * quality + rng.normal(0, 2, n), 0, 11)
    cards = _rounded(5.5 - 1.1 * quality + rng.normal(0, 1.8, n), 0, 11)
    delayed = _rounded(13 - 4 * quality + rng.normal(0, 4, n), 0, 28)
    inquiries = _rounded(5.8 - 2 * quality + rng.normal(0, 2.5, n), 0, 17)
    if thin_file:
        loans, accounts, cards = (rng.integers(0, k, n) for k in (2, 4, 3))
        delayed, inquiries = rng.integers(0, 4, n), rng.integers(0, 3, n)
    debt = np.exp(rng.normal(6.7 + 0.15 * loans - 0.35 * quality, 0.6))
    return {
        "customer": np.arange(first, first + n, dtype=np.int64),
        "segment": np.full(n, int(thin_file), dtype=np.int8),
        "joined_on": np.full(n, on_day, dtype=np.int64),
        "born_on": on_day - np.floor(age * DAYS_PER_YEAR + rng.random(n) * 365).astype(np.int64),
        "occupation": rng.integers(0, len(OCCUPATIONS), n).astype(np.int8),
        "annual_income": np.round(np.clip(income, 7_005, 179_987), 2),
        "inhand_share": rng.uniform(0.86, 1.08, n),
        "billing_day": rng.integers(1, 29, n).astype(np.int8),
        "history_start": month - np.round(history).astype(np.int64),
        "num_bank_accounts": accounts,
        "num_credit_card": cards,
        "interest_rate": _rounded(14.5 - 5 * quality + rng.normal(0, 5, n), 1, 34),
        "num_of_loan": loans,
        "loan_types": pack_loan_types(rng.integers(0, len(LOAN_TYPES), (n, MAX_LOANS))),
        "outstanding_debt": np.round(np.clip(debt, 0.23, 4_998), 2),
        "delayed_payments": delayed,
        "inquiries": inquiries,
        "invest_share": rng.uniform(0.02, 0.12, n),
        "high_spender": rng.random(n) < 1 / (1 + np.exp(-(np.log(income / 40_000) + 0.2 * quality))),
        "payment_size": np.clip(np.floor(rng.random(n) * 3 + 0.3 * quality), 0, 2).astype(np.int8),
        "quality": quality,
        "quality_mean": np.full(n, -0.35 if thin_file else 0.0),
        "stress": np.zeros(n),
        "last_month": np.full(n, -1, dtype=np.int64),
    }


def loan_type_strings(packed: np.ndarray, loans: np.ndarray) -> pa.Array:
    """``Type_of_Loan`` as published: the first ``loans`` types joined (``"A, B, and C"``, ``"A"``);
    null without a loan."""
    texts: dict[tuple[int, int], str | None] = {}
    out = []
    for key in zip(packed.tolist(), loans.tolist(), strict=True):
        if key not in texts:
            value, count = key
            names = [LOAN_TYPES[(value // len(LOAN_TYPES) ** i) % len(LOAN_TYPES)] for i in range(count)]
            texts[key] = (
                None
                if not names
                else names[0]
                if len(names) == 1
                else f"{', '.join(names[:-1])}, and {names[-1]}"
            )
        out.append(texts[key])
    return pa.array(out, pa.string())
