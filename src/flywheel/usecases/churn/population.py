"""Who the customers are: users and their latent buying behaviour.

The generative customer model (a BG/NBD–Pareto/NBD hybrid with covariates):

* **Signups.** Users sign up over the period with a linearly growing rate (the last day sees twice the
  signups of the first), so cohorts are spread across the whole history.
* **Buyers.** 80 % of users ever buy; a buyer's first order follows signup after an exponential delay
  (mean 20 days).
* **Purchase rate.** While alive, a buyer orders as a Poisson process with rate ``lam`` (orders/day)
  drawn from a Gamma(2, ·) with mean 1/20, scaled by traffic source (Email 1.3, Organic 1.15,
  Search 1.0, Facebook 0.85, Display 0.8) and age (×1.15 for ages 25–50, ×0.9 otherwise). The rate
  is modulated by a seasonal curve with Black-Friday and December peaks (see ``purchases``).
* **Dropout.** Each buyer has a latent lifetime: dropout time ``tau`` = first order + Exp(mean 500
  days × source factor (Email 1.4 … Display 0.6) × age factor × sqrt(spend) × Gamma(2, ½)).
  In addition, after every order the buyer drops out with probability ``p_drop`` (1 %), raised by a
  bad experience: +25 points after a returned order, +15 after a cancelled one.
* **Experience.** Each buyer has latent propensities to cancel (``kappa`` ~ Beta(1, 14)) and to return
  (``rho`` ~ Beta(1, 9)); so return and cancel rates seen in features predict churn per customer.
* **Spend.** ``spend`` ~ LogNormal(0, 0.35) sets items per order and lengthens lifetime.

Churn is therefore learnable from recency, frequency, monetary value and bad experiences, but not
trivially: a dropped-out customer looks like a slow buyer for a while, and seasonality adds noise.
The latent state of every customer is kept beside the lake so that later batches continue it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.data.schema import TIMESTAMP
from flywheel.usecases.churn import catalog
from flywheel.usecases.churn.tables import GENDERS, TABLES, TRAFFIC_SOURCES

US_PER_DAY = 86_400_000_000
BUYER_SHARE = 0.8
FIRST_ORDER_DELAY_DAYS = 20.0
MEAN_RATE_PER_DAY = 1 / 20
MEAN_LIFETIME_DAYS = 500.0
BASE_DROP_PROBABILITY = 0.01
SOURCE_RATE = np.array([1.0, 1.15, 0.85, 1.3, 0.8])  # in TRAFFIC_SOURCES order
SOURCE_LIFETIME = np.array([1.0, 1.2, 0.7, 1.4, 0.6])

STATE_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("gender", pa.int8(), nullable=False),  # index into GENDERS
        pa.field("buyer", pa.bool_(), nullable=False),
        pa.field("first_order_at", pa.float64(), nullable=False),  # days since epoch; inf: never
        pa.field("lam", pa.float64(), nullable=False),
        pa.field("tau", pa.float64(), nullable=False),
        pa.field("p_drop", pa.float64(), nullable=False),
        pa.field("rho", pa.float64(), nullable=False),
        pa.field("kappa", pa.float64(), nullable=False),
        pa.field("spend", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class SignupMix:
    """Who signs up: traffic-source shares and the share of young (16–35) signups."""

    traffic_shares: tuple[float, ...] = (0.70, 0.15, 0.06, 0.05, 0.04)
    young_share: float = 0.0


def growing_signup_days(count: int, start: float, end: float, rng: np.random.Generator) -> np.ndarray:
    """Signup times (days since epoch) whose density grows linearly to twice its initial value."""
    growth = 1.0
    u = rng.random(count)
    x = (-1.0 + np.sqrt(1.0 + 2.0 * growth * u * (1.0 + growth / 2.0))) / growth
    return np.sort(start + x * (end - start))


def signup_rate_at_end(count: int, start: float, end: float) -> float:
    """Signups per day at the end of a growing-signup period of ``count`` users."""
    growth = 1.0
    return count * (1.0 + growth) / (1.0 + growth / 2.0) / (end - start)


def new_users(
    signup_days: np.ndarray, first_id: int, rng: np.random.Generator, mix: SignupMix = SignupMix()
) -> tuple[pa.Table, pa.Table]:
    """Users signing up at ``signup_days`` with ids from ``first_id``: (users table, latent state)."""
    n = signup_days.size
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    gender = rng.integers(0, 2, n).astype(np.int8)
    age = rng.integers(12, 71, n)
    young = rng.random(n) < mix.young_share
    age[young] = rng.integers(16, 36, young.sum())
    source = rng.choice(len(TRAFFIC_SOURCES), n, p=np.asarray(mix.traffic_shares) / sum(mix.traffic_shares))

    shares = np.array([p[5] for p in catalog.PLACES])
    place = rng.choice(len(catalog.PLACES), n, p=shares / shares.sum())
    countries, states, cities, lats, lons = (pa.array([p[i] for p in catalog.PLACES]) for i in range(5))
    first_m, first_f = pa.array(catalog.FIRST_NAMES_M), pa.array(catalog.FIRST_NAMES_F)
    first_idx = rng.integers(0, len(catalog.FIRST_NAMES_M), n)
    first_name = pc.if_else(pa.array(gender == 0), first_m.take(first_idx), first_f.take(first_idx))
    last_name = pa.array(catalog.LAST_NAMES).take(pa.array(rng.integers(0, len(catalog.LAST_NAMES), n)))
    domain = pa.array(["example.com", "example.org", "example.net"]).take(pa.array(rng.integers(0, 3, n)))
    email = pc.binary_join_element_wise(
        pc.utf8_lower(pc.binary_join_element_wise(first_name, last_name, "")), domain, "@"
    )
    street = pc.binary_join_element_wise(
        pa.array(np.char.mod("%d", rng.integers(1, 9999, n))),
        pa.array(catalog.STREET_NAMES).take(pa.array(rng.integers(0, len(catalog.STREET_NAMES), n))),
        pa.array(catalog.STREET_SUFFIXES).take(pa.array(rng.integers(0, len(catalog.STREET_SUFFIXES), n))),
        " ",
    )
    postal = pa.array(np.char.mod("%05d", rng.integers(1000, 99999, n)))
    place_idx = pa.array(place)
    lat = np.round(lats.to_numpy()[place] + rng.normal(0, 0.15, n), 6)
    lon = np.round(lons.to_numpy()[place] + rng.normal(0, 0.15, n), 6)
    created = pa.array(np.round(signup_days * US_PER_DAY).astype(np.int64)).cast(TIMESTAMP)
    users = pa.table(
        [
            ids,
            first_name,
            last_name,
            email,
            age.astype(np.int64),
            pa.array(GENDERS).take(pa.array(gender)),
            states.take(place_idx),
            street,
            postal,
            cities.take(place_idx),
            countries.take(place_idx),
            lat,
            lon,
            pa.array(TRAFFIC_SOURCES).take(pa.array(source)),
            created,
        ],
        schema=TABLES["users"].arrow_schema,
    )

    buyer = rng.random(n) < BUYER_SHARE
    first_order = np.where(buyer, signup_days + rng.exponential(FIRST_ORDER_DELAY_DAYS, n), np.inf)
    age_rate = np.where((age >= 25) & (age <= 50), 1.15, 0.9)
    lam = rng.gamma(2.0, MEAN_RATE_PER_DAY / 2.0, n) * SOURCE_RATE[source] * age_rate
    spend = rng.lognormal(0.0, 0.35, n)
    age_life = 1.0 + (age - 40) / 100.0
    mean_life = (
        MEAN_LIFETIME_DAYS * SOURCE_LIFETIME[source] * age_life * np.sqrt(spend) * rng.gamma(2.0, 0.5, n)
    )
    tau = np.where(buyer, first_order + rng.exponential(1.0, n) * mean_life, signup_days)
    state = pa.table(
        [
            ids,
            gender,
            buyer,
            first_order,
            lam,
            tau,
            np.full(n, BASE_DROP_PROBABILITY),
            rng.beta(1.0, 9.0, n),
            rng.beta(1.0, 14.0, n),
            spend,
        ],
        schema=STATE_SCHEMA,
    )
    return users, state
