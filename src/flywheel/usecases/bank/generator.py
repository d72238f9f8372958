"""Synthetic bank-marketing history: clients, monthly phone campaigns and the crisis-era indicators.

The generator owns a deterministic world in the ``contacts`` and ``macro`` tables, with both UCI
layouts' columns filled (``balance``, ``day`` and ``day_of_week``, the indicators) and consistent with
each contact's ``contact_at``:

* **Clients.** Job drawn with the published shares; age by job (retired 50–95, students 18–30, others
  around 40); marital status by age; education by job (additional vocabulary); ``default`` mostly
  ``no`` with ``unknown`` more frequent for blue-collar and older clients; ``balance`` log-normal by age
  and job with 7 % zero and 8 % overdrawn; housing loans most frequent at 25–50, personal loans 15 %.
  Each client has a latent propensity (a logit offset, N(0, 0.5)). Clients age: ``age`` is computed
  at each contact from a birth date.
* **Campaigns.** A campaign is a calendar month. Each month about ``contacts_per_month`` contacts
  (Poisson, prorated to the working days inside the period) reach clients drawn without replacement:
  never-contacted clients are twice as likely as others, clients whose last campaign was a success
  less than a third as likely, and clients who subscribed this month are not called again. A reached
  client is called up to a geometric number of times (mean ≈ 2.4) at increasing moments on working
  days (Mon–Fri, 9:00–18:00 UTC) until they subscribe; ``campaign`` is the call's rank in the month.
  ``previous`` counts the client's calls in earlier months, ``pdays`` is the days from the client's
  last call in an earlier month to this call's date (null if none), ``poutcome`` is ``success`` if the
  client subscribed in their latest earlier campaign, ``failure`` if not and ``nonexistent`` without.
* **Macro.** Indicators follow the 2008 crisis: ``euribor3m`` ≈ 5 % falling sharply late 2008 to ≈ 1 %,
  ``emp_var_rate`` +1.4 → −3, ``nr_employed`` 5228 → 4960, ``cons_price_idx`` 92–95 (seasonal),
  ``cons_conf_idx`` −50 to −30 (worst in mid 2009), each a deterministic curve of the month plus small
  noise seeded by (seed, month), rounded as published. After Nov 2010 the curves recover slowly. A
  ``macro`` row is published on the 1st of each month (or at the period start when a period starts
  within a month not yet published); contacts carry the latest published values.
* **Subscription.** Each call subscribes with a logistic probability of the client (age < 25 or ≥ 60,
  job, balance, housing/personal loans, ``default`` unknown, latent propensity), the history
  (``poutcome`` success strongly positive, ``previous``), the channel (telephone below cellular), the
  call's rank (more calls, less likely) and the macro context (lower ``euribor3m`` and
  ``nr_employed``, more likely), calibrated to ≈ 11 % of contacts over the default period, rising
  through the crisis. ``duration`` is drawn after the outcome (longer calls for ``yes``): it leaks the
  outcome as in the real data, which is why no model may use it.

Drift scenarios for simulated batches, chosen by name (``DRIFT_SCENARIOS``):

* ``none`` — the same process continues.
* ``rate_cut`` — the three-month rate drops 1.5 points (floored at −0.5 %) from the period start, and
  clients with savings (balance ≥ 1500) become more inclined to subscribe (+0.5 logit); both persist.
* ``new_segment`` — new clients, half as many as the current ones, join at the period start: ages
  18–30, mostly students and unemployed, small balances, few loans, mostly reached by cellular, and
  more inclined to subscribe (+0.6 logit); being never contacted, they receive a large share of the
  period's calls.
* ``channel_shift`` — 80 % of the period's campaigns are run by telephone (35 % otherwise), and a
  telephone call is less effective than usual (−0.4 logit more); it lasts for the period only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from flywheel.data.batch import Batch, check_continuation
from flywheel.data.schema import TIMESTAMP
from flywheel.usecases.bank.tables import (
    DAYS_OF_WEEK,
    EDUCATION_ADDITIONAL,
    INDICATORS,
    JOBS,
    MARITAL,
    MONTHS,
    NO_YES_UNKNOWN,
    POUTCOME_ADDITIONAL,
    TABLES,
)
from flywheel.usecases.spec import Settings

GENERATOR_VERSION = "1"
US_PER_SECOND = 1_000_000
SECONDS_PER_DAY = 86_400
WORKDAY_START_SECONDS = 9 * 3600
WORKDAY_SECONDS = 9 * 3600  # calls between 9:00 and 18:00 UTC
MAX_CALLS = 15
MACRO_STREAM = 77  # the random stream of the macro noise, apart from the batches' [seed, sequence]
CURVE_ORIGIN = 2008 * 12 + 4  # May 2008: month 0 of the crisis curves
FAILURE, NONEXISTENT, SUCCESS = (POUTCOME_ADDITIONAL.index(v) for v in ("failure", "nonexistent", "success"))
NO, YES, UNKNOWN = range(3)  # codes into NO_YES_UNKNOWN

# Shares of the published data (bank-additional-full), in JOBS order.
JOB_SHARES = np.array([0.253, 0.225, 0.035, 0.026, 0.071, 0.042, 0.035, 0.096, 0.021, 0.164, 0.025, 0.008])
YOUNG_JOB_SHARES = np.array([0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.55, 0.0, 0.3, 0.0])
JOB_LOGIT = np.array([0.0, -0.35, -0.2, -0.1, 0.0, 0.45, -0.05, -0.2, 0.7, -0.05, 0.2, 0.0])
JOB_BALANCE = np.array([0.0, -0.2, 0.3, -0.3, 0.4, 0.4, 0.2, -0.2, -0.6, 0.0, -0.4, 0.0])
# Education shares per job, in EDUCATION_ADDITIONAL order (basic.4y, basic.6y, basic.9y, high.school,
# illiterate, professional.course, university.degree, unknown).
EDUCATION_BY_JOB = np.array(
    [
        [0.02, 0.02, 0.05, 0.32, 0.0, 0.04, 0.51, 0.04],  # admin.
        [0.25, 0.15, 0.38, 0.09, 0.001, 0.05, 0.01, 0.069],  # blue-collar
        [0.1, 0.05, 0.15, 0.17, 0.001, 0.09, 0.42, 0.019],  # entrepreneur
        [0.45, 0.07, 0.09, 0.16, 0.001, 0.06, 0.13, 0.039],  # housemaid
        [0.03, 0.03, 0.06, 0.1, 0.0, 0.03, 0.71, 0.04],  # management
        [0.34, 0.04, 0.07, 0.16, 0.002, 0.14, 0.17, 0.078],  # retired
        [0.06, 0.02, 0.16, 0.08, 0.002, 0.1, 0.54, 0.038],  # self-employed
        [0.03, 0.06, 0.14, 0.64, 0.0, 0.06, 0.04, 0.03],  # services
        [0.03, 0.02, 0.11, 0.42, 0.0, 0.05, 0.2, 0.17],  # student
        [0.01, 0.01, 0.06, 0.13, 0.0, 0.48, 0.29, 0.02],  # technician
        [0.11, 0.05, 0.19, 0.26, 0.0, 0.14, 0.23, 0.02],  # unemployed
        [0.16, 0.07, 0.09, 0.11, 0.0, 0.04, 0.1, 0.43],  # unknown
    ]
)
POUTCOME_LOGIT = np.array([0.3, 0.0, 1.9])  # in POUTCOME_ADDITIONAL order
INTERCEPT = -2.4

STATE_SCHEMA = pa.schema(
    [
        pa.field("client_id", pa.int64(), nullable=False),
        pa.field("born_on", pa.int64(), nullable=False),  # days since 1970-01-01
        pa.field("job", pa.int8(), nullable=False),  # index into JOBS
        pa.field("marital", pa.int8(), nullable=False),  # index into MARITAL
        pa.field("education", pa.int8(), nullable=False),  # index into EDUCATION_ADDITIONAL
        pa.field("default", pa.int8(), nullable=False),  # index into NO_YES_UNKNOWN
        pa.field("balance", pa.float64(), nullable=False),
        pa.field("housing", pa.int8(), nullable=False),  # index into NO_YES_UNKNOWN
        pa.field("loan", pa.int8(), nullable=False),  # index into NO_YES_UNKNOWN
        pa.field("segment", pa.int8(), nullable=False),  # 0: the first clients, 1: a new_segment drift
        pa.field("propensity", pa.float64(), nullable=False),  # latent logit offset
        pa.field("prior_contacts", pa.int64(), nullable=False),  # calls in months before the campaign
        pa.field("prior_last_on", pa.int64(), nullable=False),  # day of the last such call; -1: none
        pa.field("prior_outcome", pa.int8(), nullable=False),  # index into POUTCOME_ADDITIONAL
        pa.field("campaign_month", pa.int64(), nullable=False),  # year*12+month-1 of the campaign; -1
        pa.field("campaign_calls", pa.int64(), nullable=False),
        pa.field("campaign_last_on", pa.int64(), nullable=False),  # day of its last call; -1: none
        pa.field("campaign_success", pa.bool_(), nullable=False),
    ]
)


class GeneratorSettings(Settings):
    """What the first synthetic history covers; equal settings give equal data."""

    clients: int = Field(8_000, ge=1)
    start: date = date(2008, 5, 1)
    end: date = date(2010, 12, 1)  # exclusive
    contacts_per_month: int = Field(1_400, ge=1)
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _end_after_start(self) -> GeneratorSettings:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self


@dataclass(frozen=True)
class Scenario:
    """How a period differs: a persisting euribor shift, the channel mix and new clients."""

    euribor_shift: float = 0.0
    telephone_share: float = 0.35
    telephone_logit: float = -0.7
    new_segment_share: float = 0.0


ScenarioFn = Callable[[dict[str, np.ndarray]], Scenario]


def _none(state: dict[str, np.ndarray]) -> Scenario:
    return Scenario()


def _rate_cut(state: dict[str, np.ndarray]) -> Scenario:
    state["propensity"][state["balance"] >= 1500] += 0.5
    return Scenario(euribor_shift=-1.5)


def _new_segment(state: dict[str, np.ndarray]) -> Scenario:
    return Scenario(new_segment_share=0.5)


def _channel_shift(state: dict[str, np.ndarray]) -> Scenario:
    return Scenario(telephone_share=0.8, telephone_logit=-1.1)


DRIFT_SCENARIOS: dict[str, ScenarioFn] = {
    "none": _none,
    "rate_cut": _rate_cut,
    "new_segment": _new_segment,
    "channel_shift": _channel_shift,
}


def _day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _month_of(day: date) -> int:
    return day.year * 12 + day.month - 1


def _first_of(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


def _pick(rng: np.random.Generator, cumulative: np.ndarray) -> np.ndarray:
    """One category per row of ``cumulative`` (rows of cumulative shares ending at 1)."""
    return (rng.random(cumulative.shape[0])[:, None] > cumulative[:, :-1]).sum(axis=1)


def _new_clients(
    n: int, first_id: int, on: date, rng: np.random.Generator, young: bool = False
) -> dict[str, np.ndarray]:
    """``n`` clients as of ``on`` with ids from ``first_id`` (young: the ``new_segment`` drift)."""
    shares = YOUNG_JOB_SHARES if young else JOB_SHARES
    job = rng.choice(len(JOBS), n, p=shares / shares.sum())
    age = np.clip(rng.normal(40, 10, n), 20, 68)
    age = np.where(job == JOBS.index("housemaid"), np.clip(rng.normal(46, 11, n), 20, 80), age)
    age = np.where(job == JOBS.index("retired"), np.clip(rng.normal(66, 7, n), 50, 95), age)
    age = np.where(job == JOBS.index("student"), np.clip(rng.normal(23, 3, n), 18, 30), age)
    if young:
        age = np.clip(rng.normal(23, 3, n), 18, 30)
    born_on = _day_number(on) - np.floor(age * 365.25 + rng.random(n) * 365).astype(np.int64)

    p_single = np.select([age < 30, age < 45], [0.7, 0.25], 0.12)
    p_divorced = np.select([age < 30, age < 45], [0.03, 0.1], 0.18)
    marital = _pick(rng, np.cumsum(np.column_stack([p_divorced, 1 - p_divorced - p_single, p_single]), 1))
    marital[rng.random(n) < 0.002] = MARITAL.index("unknown")
    education = _pick(rng, np.cumsum(EDUCATION_BY_JOB / EDUCATION_BY_JOB.sum(1, keepdims=True), 1)[job])

    p_unknown = 0.12 + 0.15 * (job == JOBS.index("blue-collar")) + 0.1 * (age > 50)
    default = np.where(rng.random(n) < p_unknown, UNKNOWN, NO)
    default[rng.random(n) < 0.0005] = YES

    mu = 6.0 + 0.015 * (age - 40) + JOB_BALANCE[job] - 0.5 * young
    balance = np.exp(rng.normal(mu, 1.25))
    kind = rng.random(n)
    balance = np.where(kind < 0.08, -np.exp(rng.normal(5.0, 1.0, n)), np.where(kind < 0.15, 0.0, balance))
    balance = np.round(np.clip(balance, -8_019, 102_127))

    p_housing = np.where((age >= 25) & (age <= 50), 0.55, 0.4)
    p_housing += 0.15 * (job == JOBS.index("blue-collar")) - 0.25 * (job == JOBS.index("retired"))
    p_housing -= 0.4 * (job == JOBS.index("student")) + 0.3 * young
    housing = (rng.random(n) < np.clip(p_housing, 0.02, 0.95)).astype(np.int64)
    loan = (rng.random(n) < (0.05 if young else 0.15)).astype(np.int64)
    unknown_loans = rng.random(n) < 0.024
    housing[unknown_loans], loan[unknown_loans] = UNKNOWN, UNKNOWN

    none = np.full(n, -1, dtype=np.int64)
    return {
        "client_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "born_on": born_on,
        "job": job.astype(np.int8),
        "marital": marital.astype(np.int8),
        "education": education.astype(np.int8),
        "default": default.astype(np.int8),
        "balance": balance,
        "housing": housing.astype(np.int8),
        "loan": loan.astype(np.int8),
        "segment": np.full(n, int(young), dtype=np.int8),
        "propensity": rng.normal(0.6 if young else 0.0, 0.5, n),
        "prior_contacts": np.zeros(n, dtype=np.int64),
        "prior_last_on": none.copy(),
        "prior_outcome": np.full(n, NONEXISTENT, dtype=np.int8),
        "campaign_month": none.copy(),
        "campaign_calls": np.zeros(n, dtype=np.int64),
        "campaign_last_on": none.copy(),
        "campaign_success": np.zeros(n, dtype=bool),
    }


def indicators(month: int, seed: int, euribor_shift: float = 0.0) -> dict[str, float]:
    """The indicators of ``month`` (year*12 + month − 1): crisis curves plus noise seeded by the month."""
    t = month - CURVE_ORIGIN
    tail = max(t - 30, 0)  # months after Nov 2010: a slow recovery
    noise = np.random.default_rng([seed, MACRO_STREAM, month]).normal(size=5)
    euribor = 0.85 + 4.15 / (1 + np.exp((t - 7.5) / 1.3)) + min(0.012 * max(t - 18, 0), 1.5)
    euribor = max(euribor + 0.03 * noise[0] + euribor_shift, -0.5)
    emp = -3.0 + 4.4 / (1 + np.exp((t - 9) / 2)) + min(0.05 * tail, 4.0) + 0.05 * noise[1]
    employed = 4960 + 268 / (1 + np.exp((t - 12) / 3)) + min(2.0 * tail, 268) + 2.0 * noise[2]
    price = np.clip(93.4 + 0.8 * np.sin(2 * np.pi * (t + 2) / 12) + 0.1 * noise[3], 92, 95)
    confidence = -38 - 10 * np.exp(-(((t - 14) / 6) ** 2)) + 2 * np.sin(2 * np.pi * t / 12)
    confidence = np.clip(confidence + 0.8 * noise[4], -50, -30)
    return {
        "emp_var_rate": round(float(emp), 1),
        "cons_price_idx": round(float(price), 3),
        "cons_conf_idx": round(float(confidence), 1),
        "euribor3m": round(float(euribor), 3),
        "nr_employed": round(float(employed), 1),
    }


@dataclass
class _Segment:
    """The part of one calendar month inside a period: its working days and share of the month."""

    month: int
    opens_at: datetime  # when the segment starts: the 1st of the month or the period start
    workdays: np.ndarray  # days since epoch of its working days
    month_share: float


def _segments(start: datetime, end: datetime) -> list[_Segment]:
    segments = []
    month = _month_of(start.date())
    while (first := datetime.combine(_first_of(month), datetime.min.time(), UTC)) < end:
        following = datetime.combine(_first_of(month + 1), datetime.min.time(), UTC)
        days = np.arange(_day_number(first.date()), _day_number(following.date()))
        weekdays = days[(days + 3) % 7 < 5]  # 1970-01-01 was a Thursday
        seconds = weekdays * SECONDS_PER_DAY + WORKDAY_START_SECONDS
        inside = (seconds >= start.timestamp()) & (seconds + WORKDAY_SECONDS <= end.timestamp())
        segments.append(_Segment(month, max(first, start), weekdays[inside], inside.mean()))
        month += 1
    return segments


def _roll_campaigns(state: dict[str, np.ndarray], month: int) -> None:
    """Close the campaigns of earlier months: they become the clients' prior history."""
    closed = (state["campaign_month"] >= 0) & (state["campaign_month"] < month)
    state["prior_contacts"][closed] += state["campaign_calls"][closed]
    state["prior_last_on"][closed] = state["campaign_last_on"][closed]
    state["prior_outcome"][closed] = np.where(state["campaign_success"][closed], SUCCESS, FAILURE)
    state["campaign_month"][closed] = -1
    state["campaign_calls"][closed] = 0
    state["campaign_last_on"][closed] = -1
    state["campaign_success"][closed] = False


def _reached(state: dict[str, np.ndarray], wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Clients reached this month, in calling order (weighted sampling without replacement)."""
    fresh = (state["prior_contacts"] == 0) & (state["campaign_calls"] == 0)
    weight = np.where(fresh, 2.0, np.where(state["prior_outcome"] == SUCCESS, 0.3, 1.0))
    keys = rng.exponential(size=fresh.size) / weight
    keys[state["campaign_success"]] = np.inf  # subscribed this month already
    count = min(wanted, int(np.isfinite(keys).sum()))
    if count == 0:
        return np.array([], dtype=np.int64)
    chosen = np.argpartition(keys, count - 1)[:count]
    return chosen[np.argsort(keys[chosen], kind="stable")]


def _logit(
    state: dict[str, np.ndarray], who: np.ndarray, age: np.ndarray, macro: dict[str, float]
) -> np.ndarray:
    """The subscription logit of a first call, before the channel and the call's rank."""
    job, balance = state["job"][who], state["balance"][who]
    return (
        INTERCEPT
        + 0.5 * (age < 25)
        + 0.8 * (age >= 60)
        + JOB_LOGIT[job]
        + 0.12 * (np.log1p(np.maximum(balance, 0.0)) - 6.0)
        - 0.35 * (state["housing"][who] == YES)
        - 0.25 * (state["loan"][who] == YES)
        - 0.3 * (state["default"][who] == UNKNOWN)
        + POUTCOME_LOGIT[state["prior_outcome"][who]]
        + 0.1 * np.minimum(state["prior_contacts"][who], 5)
        - 0.2 * (macro["euribor3m"] - 3.0)
        - 0.0025 * (macro["nr_employed"] - 5100.0)
        + state["propensity"][who]
    )


def _calls(
    logit: np.ndarray, done: np.ndarray, wanted: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Calls per reached client (cut so that they total at most ``wanted``) and whether they subscribed."""
    planned = np.minimum(rng.geometric(0.42, logit.size), MAX_CALLS)
    rank = done[:, None] + np.arange(MAX_CALLS)[None, :]  # calls made earlier this month, then these
    yes = rng.random((logit.size, MAX_CALLS)) < 1 / (1 + np.exp(-(logit[:, None] - 0.15 * rank)))
    yes &= np.arange(MAX_CALLS)[None, :] < planned[:, None]
    subscribed = yes.any(axis=1)
    calls = np.where(subscribed, yes.argmax(axis=1) + 1, planned)
    before = np.cumsum(calls) - calls
    cut = np.clip(wanted - before, 0, None)
    subscribed &= calls <= cut
    return np.minimum(calls, cut), subscribed


def _call_times(calls: np.ndarray, workdays: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Increasing call moments (µs since epoch) on working days, flattened client by client."""
    draws = rng.random((calls.size, max(int(calls.max(initial=0)), 1)))
    draws[np.arange(draws.shape[1])[None, :] >= calls[:, None]] = np.inf
    draws = np.sort(draws, axis=1)
    seconds = np.floor(draws[np.isfinite(draws)] * workdays.size * WORKDAY_SECONDS).astype(np.int64)
    day = workdays[seconds // WORKDAY_SECONDS]
    return (day * SECONDS_PER_DAY + WORKDAY_START_SECONDS + seconds % WORKDAY_SECONDS) * US_PER_SECOND


def _durations(yes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Call lengths in seconds, drawn after the outcome: a subscription takes a longer call."""
    seconds = np.where(
        yes, rng.lognormal(np.log(420), 0.45, yes.size), rng.lognormal(np.log(150), 0.8, yes.size)
    )
    return np.clip(np.round(seconds), 1, 4_918).astype(np.int64)


def _campaign_month(
    state: dict[str, np.ndarray],
    segment: _Segment,
    macro: dict[str, float],
    scenario: Scenario,
    contacts_per_month: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """One month's calls, as arrays of rows; the reached clients' campaign state is updated."""
    _roll_campaigns(state, segment.month)
    workdays = segment.workdays
    wanted = int(rng.poisson(contacts_per_month * segment.month_share)) if workdays.size else 0
    who = _reached(state, wanted, rng)
    age = ((workdays[0] if workdays.size else 0) - state["born_on"][who]) / 365.25
    telephone = rng.random(who.size) < np.clip(scenario.telephone_share + 0.15 * (age >= 55), 0, 1)
    telephone &= ~((state["segment"][who] == 1) & (rng.random(who.size) < 0.7))
    logit = _logit(state, who, age, macro) + scenario.telephone_logit * telephone
    calls, subscribed = _calls(logit, state["campaign_calls"][who], wanted, rng)
    keep = calls > 0
    who, calls, subscribed, telephone = who[keep], calls[keep], subscribed[keep], telephone[keep]
    at = _call_times(calls, workdays, rng)
    rows = _rows(state, who, calls, subscribed, rng)
    rows["at"] = at
    rows["telephone"] = np.repeat(telephone, calls)
    for name in INDICATORS:
        rows[name] = np.full(at.size, macro[name])
    state["campaign_month"][who] = segment.month
    state["campaign_calls"][who] += calls
    state["campaign_last_on"][who] = at[np.cumsum(calls) - 1] // (SECONDS_PER_DAY * US_PER_SECOND)
    state["campaign_success"][who] |= subscribed
    return rows


def _rows(
    state: dict[str, np.ndarray],
    who: np.ndarray,
    calls: np.ndarray,
    subscribed: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Per-call columns of the reached clients: rank, history before this campaign, outcome."""
    total = int(calls.sum())
    first = np.cumsum(calls) - calls
    yes = np.zeros(total, dtype=bool)
    yes[(first + calls - 1)[subscribed]] = True
    client = np.repeat(who, calls)
    return {
        "client": client,
        "campaign": np.arange(total) - np.repeat(first, calls) + 1 + state["campaign_calls"][client],
        "previous": state["prior_contacts"][client],
        "prior_last_on": state["prior_last_on"][client],
        "poutcome": state["prior_outcome"][client],
        "yes": yes,
        "duration": _durations(yes, rng),
    }


def _strings(vocabulary: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(codes.astype(np.int64)))


def _contacts_table(rows: dict[str, np.ndarray], state: dict[str, np.ndarray], first_id: int) -> pa.Table:
    """The ``contacts`` table of the period's calls, in time order, ids from ``first_id``."""
    order = np.argsort(rows["at"], kind="stable")
    rows = {name: values[order] for name, values in rows.items()}
    who, n = rows["client"], rows["at"].size
    day = rows["at"] // (SECONDS_PER_DAY * US_PER_SECOND)
    dates = day.astype("datetime64[D]")
    month_start = dates.astype("datetime64[M]")
    pdays = pa.array(day - rows["prior_last_on"], mask=rows["prior_last_on"] < 0)
    columns = {
        "contact_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "client_id": state["client_id"][who],
        "contact_at": pa.array(rows["at"]).cast(pa.timestamp("us")).cast(TIMESTAMP),
        "age": np.minimum((day - state["born_on"][who]) // 365.25, 100).astype(np.int64),
        "job": _strings(JOBS, state["job"][who]),
        "marital": _strings(MARITAL, state["marital"][who]),
        "education": _strings(EDUCATION_ADDITIONAL, state["education"][who]),
        "default": _strings(NO_YES_UNKNOWN, state["default"][who]),
        "balance": state["balance"][who],
        "housing": _strings(NO_YES_UNKNOWN, state["housing"][who]),
        "loan": _strings(NO_YES_UNKNOWN, state["loan"][who]),
        "contact": _strings(("cellular", "telephone"), rows["telephone"].astype(np.int64)),
        "month": _strings(MONTHS, month_start.astype(np.int64) % 12),
        "day": (dates - month_start).astype(np.int64) + 1,
        "day_of_week": _strings(DAYS_OF_WEEK, (day + 3) % 7),  # 1970-01-01 was a Thursday
        "duration": rows["duration"],
        "campaign": rows["campaign"],
        "pdays": pdays,
        "previous": rows["previous"],
        "poutcome": _strings(POUTCOME_ADDITIONAL, rows["poutcome"]),
        **{name: rows[name] for name in INDICATORS},
        "y": _strings(("no", "yes"), rows["yes"].astype(np.int64)),
    }
    return pa.table(columns, schema=TABLES["contacts"].arrow_schema)


def _macro_table(published: list[tuple[datetime, dict[str, float]]]) -> pa.Table:
    columns = {"published_at": pa.array([at for at, _ in published], TIMESTAMP)}
    for name in INDICATORS:
        columns[name] = pa.array([values[name] for _, values in published], pa.float64())
    return pa.table(columns, schema=TABLES["macro"].arrow_schema)


def _run_period(
    state: dict[str, np.ndarray],
    start: datetime,
    end: datetime,
    scenario: Scenario,
    generator: dict[str, Any],
    rng: np.random.Generator,
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """Macro publications and campaigns from ``start`` to ``end``: the tables and the next bookkeeping."""
    macro = dict(generator["macro"])
    macro["euribor_shift"] += scenario.euribor_shift
    month = _parse_month(macro["published_month"])
    published, month_rows = [], []
    for index, segment in enumerate(_segments(start, end)):
        if segment.month != month or (index == 0 and scenario.euribor_shift):
            macro["current"] = indicators(segment.month, generator["seed"], macro["euribor_shift"])
            published.append((segment.opens_at, macro["current"]))
            month = segment.month
        month_rows.append(
            _campaign_month(state, segment, macro["current"], scenario, generator["contacts_per_month"], rng)
        )
    macro["published_month"] = None if month is None else f"{month // 12:04d}-{month % 12 + 1:02d}"
    rows = {name: np.concatenate([r[name] for r in month_rows]) for name in month_rows[0]}
    contacts = _contacts_table(rows, state, generator["next_ids"]["contacts"])
    bookkeeping = {
        **generator,
        "next_ids": {
            "clients": int(state["client_id"].max(initial=0)) + 1,
            "contacts": generator["next_ids"]["contacts"] + contacts.num_rows,
        },
        "macro": macro,
    }
    return {"macro": _macro_table(published), "contacts": contacts}, bookkeeping


def _parse_month(text: str | None) -> int | None:
    if text is None:
        return None
    year, month = text.split("-")
    return int(year) * 12 + int(month) - 1


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def generation_id(settings: GeneratorSettings) -> str:
    """The batch id of a generated history: equal settings give the same id (and the same data)."""
    return (
        f"bank-gen-{settings.start:%Y%m%d}-{settings.end:%Y%m%d}-s{settings.seed}"
        f"-c{settings.clients}-m{settings.contacts_per_month}-v{GENERATOR_VERSION}"
    )


def generate_batch(settings: GeneratorSettings, batch_id: str | None = None) -> Batch:
    """The first batch: clients, their campaigns from ``start`` to ``end`` and the published macro.

    Args:
        settings: What the history covers.
        batch_id: The batch's id; by default :func:`generation_id`.

    Returns:
        A ``generate`` batch with the ``macro`` and ``contacts`` tables, the clients' latent state and
        the bookkeeping :func:`simulate_batch` continues from.
    """
    rng = np.random.default_rng([settings.seed, 0])
    state = _new_clients(settings.clients, 1, settings.start, rng)
    generator = {
        "version": GENERATOR_VERSION,
        "seed": settings.seed,
        "sequence": 0,
        "drift": "none",
        "contacts_per_month": settings.contacts_per_month,
        "next_ids": {"clients": settings.clients + 1, "contacts": 1},
        "macro": {"published_month": None, "euribor_shift": 0.0, "current": None},
    }
    start, end = _midnight(settings.start), _midnight(settings.end)
    tables, generator = _run_period(state, start, end, DRIFT_SCENARIOS["none"](state), generator, rng)
    return Batch(
        batch_id=batch_id or generation_id(settings),
        kind="generate",
        period_start=start,
        period_end=end,
        tables=tables,
        state=pa.table(state, schema=STATE_SCHEMA),
        generator=generator,
    )


def simulate_batch(
    previous_state: pa.Table,
    generator: dict[str, Any],
    period_start: datetime,
    days: int,
    drift: str,
    batch_id: str | None = None,
) -> Batch:
    """The next ``days`` after ``period_start``: the same clients' history and the macro path continue.

    Args:
        previous_state: The clients' latent state at the end of the previous batch.
        generator: The previous batch's bookkeeping.
        period_start: Where the period starts (a naive datetime is taken as UTC).
        days: The period's length.
        drift: A name in ``DRIFT_SCENARIOS``.
        batch_id: The batch's id; by default ``sim-<start>-<end>``.

    Raises:
        DataError: Unknown drift, a non-positive ``days``, or a state or bookkeeping of another version.
    """
    check_continuation(
        "bank", drift, DRIFT_SCENARIOS, days, generator, previous_state, GENERATOR_VERSION, STATE_SCHEMA
    )
    start = period_start if period_start.tzinfo else period_start.replace(tzinfo=UTC)
    end = start + timedelta(days=days)
    sequence = generator["sequence"] + 1
    rng = np.random.default_rng([generator["seed"], sequence])
    state = {name: previous_state.column(name).to_numpy().copy() for name in STATE_SCHEMA.names}
    scenario = DRIFT_SCENARIOS[drift](state)
    if scenario.new_segment_share:
        count = max(1, round(scenario.new_segment_share * state["client_id"].size))
        joining = _new_clients(count, generator["next_ids"]["clients"], start.date(), rng, young=True)
        state = {name: np.concatenate([state[name], joining[name]]) for name in STATE_SCHEMA.names}
    tables, bookkeeping = _run_period(
        state, start, end, scenario, {**generator, "sequence": sequence, "drift": drift}, rng
    )
    return Batch(
        batch_id=batch_id or f"sim-{start:%Y%m%d}-{end:%Y%m%d}",
        kind="simulate",
        period_start=start,
        period_end=end,
        tables=tables,
        state=pa.table(state, schema=STATE_SCHEMA),
        generator=bookkeeping,
    )


class BankGenerator:
    """The synthetic campaigns as the platform's generator: a first history, then each next period
    continuing the clients' history and the macro path."""

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
