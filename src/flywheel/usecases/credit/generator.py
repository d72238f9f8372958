"""Synthetic credit records: customers' monthly statements under a latent credit model.

The generator owns a deterministic world in ``credit_records``:

* **Customers** (:mod:`flywheel.usecases.credit.customers`): stable attributes (age that ages with a
  birth date, occupation, annual income, a billing day 1–28 dating each monthly statement, so record
  dates spread over the month) and a latent credit ``quality``, standard normal over the population.
* **Each month**, at the customer's billing day: quality moves as an AR(1) (``PHI`` = 0.9) around the
  customer's mean (lowered by ``stress``); loans are taken (more often at low quality) and repaid,
  debt drifts with quality and loans, the payment's delay from the due date (a month more for each
  missed payment cycle, more often missed at low quality: a tail past 30 and 60 days), the utilization
  ratio and the credit-limit change follow quality and stress, late payments and credit inquiries
  accumulate, and the invested amount, the spending behaviour and the month-end balance follow the
  in-hand salary.
  Credit mix and whether only the minimum was paid are noisy readings of quality.
* **Credit score** is an ordinal logit (:func:`_score`), cut at thresholds calibrated to the published
  shares: about Standard 53 %, Poor 29 %, Good 18 % over the default period. As lenders' scores do, it
  is nonlinear in what the record shows, so that boosted trees beat a linear model on it, as they do on
  the published data (a linear logit made a logistic regression as good as CatBoost):

  - thresholds: a payment more than 30 days late (a missed cycle) counts heavily, more than 60 days
    more heavily still; utilization hurts only above 35 %;
  - saturation: income helps with diminishing returns (``1 − exp(−income / 15,000)``);
  - interactions: the month's debt service (the EMI and a twelfth of the outstanding debt, against the
    in-hand salary) hurts above 12 % of it, up to a cap; five or more loans on a credit history
    shorter than ten years; paying only the minimum while utilization is above 35 %.

  Small linear terms (delayed payments, inquiries, interest rate, credit mix, paying more than the
  minimum) and the latent quality, which the records show only through its readings, add to it. The
  score does not feed back into the customers' state; it is autocorrelated per customer, as quality
  and the attributes are.

Drift scenarios for simulated batches, chosen by name (``DRIFT_SCENARIOS``); each persists:

* ``none`` — the same process continues.
* ``recession`` — incomes fall 15 %, and every customer's ``stress`` rises by 1: quality reverts to a
  mean 0.7 lower, delays grow by 4 days and payment cycles are missed more often, utilization grows by
  5 points, more credit inquiries; the Poor share grows (from about 29 % to 48 % in the first month).
* ``new_segment`` — new customers, half as many as the current ones, join at the period start: aged
  18–26, thin files (0–24 months of credit history, few accounts, cards and loans), lower incomes and
  a lower mean quality.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from flywheel.data.batch import Batch, check_continuation
from flywheel.data.schema import TIMESTAMP
from flywheel.usecases.credit import identity
from flywheel.usecases.credit.customers import (
    DAYS_PER_YEAR,
    MAX_LOANS,
    STATE_SCHEMA,
    loan_type_strings,
    new_customers,
)
from flywheel.usecases.credit.tables import (
    CREDIT_MIXES,
    CREDIT_RECORDS,
    CREDIT_SCORES,
    MIN_AMOUNT_ANSWERS,
    OCCUPATIONS,
    PAYMENT_BEHAVIOURS,
)
from flywheel.usecases.spec import Settings

GENERATOR_VERSION = "2"  # bumped whenever equal settings give other data
US_PER_DAY = 86_400 * 1_000_000
FIRST_CUSTOMER = 0x1000
FIRST_RECORD = 0x1602  # the published data's first ID
PHI = 0.9  # month-to-month autocorrelation of the latent quality
# Cut points of the score's ordinal logit: Poor below the first, Good above the second (calibrated on
# the default settings to about 29 % Poor and 18 % Good).
THRESHOLDS = (-0.41, 2.96)


class GeneratorSettings(Settings):
    """What the first synthetic history covers; equal settings give equal data. Statements are
    monthly: each customer has one in every month from ``start`` until ``end`` (exclusive), dated on
    the customer's billing day."""

    customers: int = Field(5_000, ge=1)
    start: date = date(2024, 1, 1)
    end: date = date(2025, 1, 1)  # exclusive; simulated batches continue from here
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _end_after_start(self) -> GeneratorSettings:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self


def _none(state: dict[str, np.ndarray]) -> float:
    return 0.0


def _recession(state: dict[str, np.ndarray]) -> float:
    state["annual_income"] = np.round(state["annual_income"] * 0.85, 2)
    state["stress"] += 1.0
    return 0.0


def _new_segment(state: dict[str, np.ndarray]) -> float:
    return 0.5  # new thin-file customers, as a share of the current ones


DRIFT_SCENARIOS: dict[str, Callable[[dict[str, np.ndarray]], float]] = {
    "none": _none,
    "recession": _recession,
    "new_segment": _new_segment,
}


def _day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _month_of(day: date) -> int:
    return day.year * 12 + day.month - 1


def _first_day(month: int) -> int:
    return _day_number(date(month // 12, month % 12 + 1, 1))


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _evolve(s: dict[str, np.ndarray], who: np.ndarray, month: int, rng: np.random.Generator) -> None:
    """One month of the customers ``who``: quality, loans, debt, late payments and inquiries."""
    n = who.size
    stress = s["stress"][who]
    mean = s["quality_mean"][who] - 0.7 * stress
    quality = PHI * s["quality"][who] + (1 - PHI) * mean + np.sqrt(1 - PHI**2) * rng.normal(size=n)
    loans = s["num_of_loan"][who]
    taken = (rng.random(n) < 0.03 + 0.03 * (quality < -0.5)) & (loans < MAX_LOANS)
    repaid = (rng.random(n) < 0.04) & (loans > 0) & ~taken
    debt = s["outstanding_debt"][who] * (1 + 0.01 * np.clip(-quality, -1, 1)) + rng.normal(0, 15, n)
    debt += 250 * taken - 180 * repaid
    s["quality"][who] = quality
    s["num_of_loan"][who] = loans + taken - repaid
    s["outstanding_debt"][who] = np.round(np.clip(debt, 0.23, 4_998), 2)
    # inquiries and late payments age out of the file too, so that without drift they stay level
    inquiries = s["inquiries"][who] + rng.poisson(0.08 + 0.12 * (quality < -0.5) + 0.1 * stress, n)
    s["inquiries"][who] = np.clip(inquiries - (rng.random(n) < 0.1), 0, 17)
    s["last_month"][who] = month


def _statement(
    s: dict[str, np.ndarray], who: np.ndarray, day: np.ndarray, month: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The statement columns of ``who`` on ``day`` (days since epoch), after :func:`_evolve`."""
    n = who.size
    quality, stress, loans = s["quality"][who], s["stress"][who], s["num_of_loan"][who]
    # a missed payment cycle adds a month to the delay (twice for some): a heavy tail past 30 and 60 days
    missed = (rng.random(n) < _logistic(-2.4 - 1.2 * quality + 0.8 * stress)) * (1 + (rng.random(n) < 0.3))
    delay = rng.normal(16 - 6 * quality + 4 * stress + 0.8 * (loans - 3.5), 5, n) + 30 * missed
    late = (delay > 15) & (rng.random(n) < 0.4)
    aged_out = rng.random(n) < 0.28
    s["delayed_payments"][who] = np.clip(s["delayed_payments"][who] + late - aged_out, 0, 28)
    inhand = s["annual_income"][who] / 12 * s["inhand_share"][who]
    emi = loans * inhand * 0.008 * rng.uniform(0.85, 1.15, n)
    invested = inhand * s["invest_share"][who] * rng.lognormal(0, 0.3, n)
    high = np.where(rng.random(n) < 0.25, rng.random(n) < 0.5, s["high_spender"][who])
    size = np.where(rng.random(n) < 0.3, rng.integers(0, 3, n), s["payment_size"][who])
    spent = inhand * (0.7 + 0.1 * high + rng.normal(0, 0.04, n))
    reading = quality + rng.normal(0, 0.35, n)
    mix = np.select([reading < -0.65, reading > 0.65], [0, 2], 1)
    minimum = np.where(rng.random(n) < 0.12, 2, (rng.random(n) < _logistic(0.3 - 1.6 * quality)).astype(int))
    columns = {
        "customer": s["customer"][who],
        "day": day,
        "age": ((day - s["born_on"][who]) // DAYS_PER_YEAR).astype(np.int64),
        "occupation": s["occupation"][who],
        "annual_income": s["annual_income"][who],
        "monthly_inhand_salary": np.round(inhand, 2),
        "num_bank_accounts": s["num_bank_accounts"][who],
        "num_credit_card": s["num_credit_card"][who],
        "interest_rate": s["interest_rate"][who],
        "num_of_loan": loans,
        "loan_types": s["loan_types"][who],
        "delay_from_due_date": np.clip(np.round(delay), -5, 67).astype(np.int64),
        "num_of_delayed_payment": s["delayed_payments"][who],
        "changed_credit_limit": np.round(np.clip(rng.normal(10.4 - 3 * quality, 6, n), -6.49, 36.97), 2),
        "num_credit_inquiries": s["inquiries"][who],
        "credit_mix": mix,
        "outstanding_debt": s["outstanding_debt"][who],
        "credit_utilization_ratio": np.round(
            np.clip(32.3 - 3 * quality + 5 * stress + rng.normal(0, 4.5, n), 20, 50), 6
        ),
        "credit_history_months": np.maximum(month - s["history_start"][who], 0),
        "payment_of_min_amount": minimum,
        "total_emi_per_month": np.round(emi, 2),
        "amount_invested_monthly": np.round(invested, 2),
        "payment_behaviour": 3 * high + size,
        "monthly_balance": np.round(np.maximum(inhand - emi - invested - spent, 0.01), 2),
    }
    columns["credit_score"] = _score(columns, quality, rng)
    return columns


def _score(r: dict[str, np.ndarray], quality: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The credit score's code (0 Poor, 1 Standard, 2 Good) of the statement columns ``r``: an ordinal
    logit of the latent quality and of thresholds, saturations and interactions of the record's values
    (the module docstring says which)."""
    delay, utilization = r["delay_from_due_date"], r["credit_utilization_ratio"]
    # a month's debt service: the EMI and a twelfth of the outstanding debt, against the in-hand salary
    service = (r["total_emi_per_month"] + r["outstanding_debt"] / 12) / r["monthly_inhand_salary"]
    minimum_only = r["payment_of_min_amount"] == 1
    z = (
        0.6 * quality
        - 1.2 * (delay > 30)
        - 2.0 * (delay > 60)
        - 0.2 * np.maximum(utilization - 35, 0)
        + 2.0 * (1 - np.exp(-r["annual_income"] / 15_000))
        - 7.0 * np.clip(service - 0.12, 0, 0.4)
        - 2.0 * ((r["num_of_loan"] >= 5) & (r["credit_history_months"] < 120))
        - 1.6 * (minimum_only & (utilization > 35))
        + 0.35 * (r["credit_mix"] == 2)
        - 0.35 * (r["credit_mix"] == 0)
        + 0.2 * (r["payment_of_min_amount"] == 0)
        - 0.03 * (r["num_of_delayed_payment"] - 13)
        - 0.04 * (r["num_credit_inquiries"] - 6)
        - 0.02 * (r["interest_rate"] - 14.5)
        + rng.logistic(0, 0.45, quality.size)
    )
    return np.searchsorted(np.array(THRESHOLDS), z).astype(np.int64)


def _months(start_us: int, end_us: int) -> range:
    first = datetime.fromtimestamp(start_us / 1e6, UTC).date()
    last = datetime.fromtimestamp((end_us - 1) / 1e6, UTC).date()
    return range(_month_of(first), _month_of(last) + 1)


def _run_period(
    state: dict[str, np.ndarray], start: datetime, end: datetime, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every statement dated in [start, end), month by month; the state moves on as it goes."""
    start_us, end_us = int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)
    parts = []
    for month in _months(start_us, end_us):
        day = _first_day(month) + state["billing_day"].astype(np.int64) - 1
        moment = day * US_PER_DAY
        due = (moment >= start_us) & (moment < end_us) & (day >= state["joined_on"])
        due &= state["last_month"] < month
        who = np.flatnonzero(due)
        _evolve(state, who, month, rng)
        parts.append(_statement(state, who, day[who], month, rng))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _strings(vocabulary: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(codes.astype(np.int64)))


def _records_table(rows: dict[str, np.ndarray], first_record: int) -> pa.Table:
    """``credit_records`` of the period's statements in time order, ids from ``first_record``."""
    order = np.lexsort((rows["customer"], rows["day"]))
    rows = {name: values[order] for name, values in rows.items()}
    n = rows["day"].size
    customers = identity.customer_ids(rows["customer"])
    hashes = identity.ssn_hashes(set(customers.to_pylist()))
    columns: dict[str, Any] = {
        "id": identity.record_ids(np.arange(first_record, first_record + n)),
        "customer_id": customers,
        "record_date": pa.array(rows["day"] * US_PER_DAY).cast(pa.timestamp("us")).cast(TIMESTAMP),
        "ssn_hash": pa.array([hashes[c] for c in customers.to_pylist()], pa.string()),
        "occupation": _strings(OCCUPATIONS, rows["occupation"]),
        "type_of_loan": loan_type_strings(rows["loan_types"], rows["num_of_loan"]),
        "credit_mix": _strings(CREDIT_MIXES, rows["credit_mix"]),
        "payment_of_min_amount": _strings(MIN_AMOUNT_ANSWERS, rows["payment_of_min_amount"]),
        "payment_behaviour": _strings(PAYMENT_BEHAVIOURS, rows["payment_behaviour"]),
        "credit_score": _strings(CREDIT_SCORES, rows["credit_score"]),
    }
    for name in CREDIT_RECORDS.column_names:
        if name not in columns:
            columns[name] = rows[name]
    return pa.table(
        {name: columns[name] for name in CREDIT_RECORDS.column_names}, CREDIT_RECORDS.arrow_schema
    )


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def generation_id(settings: GeneratorSettings) -> str:
    """The batch id of a generated history: equal settings give the same id (and the same data)."""
    return (
        f"credit-gen-{settings.start:%Y%m%d}-{settings.end:%Y%m%d}-s{settings.seed}"
        f"-c{settings.customers}-v{GENERATOR_VERSION}"
    )


def generate_batch(settings: GeneratorSettings, batch_id: str | None = None) -> Batch:
    """The first batch: ``customers`` customers and their monthly statements from ``start`` to ``end``.

    Returns:
        A ``generate`` batch with ``credit_records``, the customers' latent state and the bookkeeping
        :func:`simulate_batch` continues from.
    """
    rng = np.random.default_rng([settings.seed, 0])
    start, end = _midnight(settings.start), _midnight(settings.end)
    state = new_customers(
        settings.customers, FIRST_CUSTOMER, _day_number(settings.start), _month_of(settings.start), rng
    )
    records = _records_table(_run_period(state, start, end, rng), FIRST_RECORD)
    return Batch(
        batch_id=batch_id or generation_id(settings),
        kind="generate",
        period_start=start,
        period_end=end,
        tables={"credit_records": records},
        state=pa.table(state, schema=STATE_SCHEMA),
        generator={
            "version": GENERATOR_VERSION,
            "seed": settings.seed,
            "sequence": 0,
            "drift": "none",
            "next_ids": {
                "customers": FIRST_CUSTOMER + settings.customers,
                "records": FIRST_RECORD + records.num_rows,
            },
        },
    )


def simulate_batch(
    previous_state: pa.Table,
    generator: dict[str, Any],
    period_start: datetime,
    days: int,
    drift: str,
    batch_id: str | None = None,
) -> Batch:
    """The next ``days`` after ``period_start``: the same customers' statements continue.

    Raises:
        DataError: Unknown drift, a non-positive ``days``, or a state or bookkeeping of another version.
    """
    check_continuation(
        "credit", drift, DRIFT_SCENARIOS, days, generator, previous_state, GENERATOR_VERSION, STATE_SCHEMA
    )
    start = period_start if period_start.tzinfo else period_start.replace(tzinfo=UTC)
    end = start + timedelta(days=days)
    sequence = generator["sequence"] + 1
    rng = np.random.default_rng([generator["seed"], sequence])
    state = {name: previous_state.column(name).to_numpy().copy() for name in STATE_SCHEMA.names}
    joining_share = DRIFT_SCENARIOS[drift](state)
    ids = dict(generator["next_ids"])
    if joining_share:
        count = max(1, round(joining_share * state["customer"].size))
        on = start.date() + timedelta(days=1) if start.time() != datetime.min.time() else start.date()
        joining = new_customers(count, ids["customers"], _day_number(on), _month_of(on), rng, thin_file=True)
        state = {name: np.concatenate([state[name], joining[name]]) for name in STATE_SCHEMA.names}
        ids["customers"] += count
    records = _records_table(_run_period(state, start, end, rng), ids["records"])
    ids["records"] += records.num_rows
    return Batch(
        batch_id=batch_id or f"sim-{start:%Y%m%d}-{end:%Y%m%d}",
        kind="simulate",
        period_start=start,
        period_end=end,
        tables={"credit_records": records},
        state=pa.table(state, schema=STATE_SCHEMA),
        generator={**generator, "sequence": sequence, "drift": drift, "next_ids": ids},
    )


class CreditGenerator:
    """The synthetic statements as the platform's generator: a first history, then each next period
    continuing the same customers (and their latent credit quality)."""

    scenarios = tuple(DRIFT_SCENARIOS)

    def generation_id(self, settings: GeneratorSettings) -> str:
        return generation_id(settings)

    def generate(self, settings: GeneratorSettings, batch_id: str) -> Batch:
        return generate_batch(settings, batch_id)

    def simulate(
        self, lake: Any, previous: dict[str, Any], days: int, drift: str, batch_id: str | None
    ) -> Batch:
        start = datetime.fromisoformat(previous["period"]["end"])
        return simulate_batch(lake.read_state(previous), previous["generator"], start, days, drift, batch_id)
