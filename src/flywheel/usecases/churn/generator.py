"""Synthetic batches: the first history (``generate``) and each next period (``simulate``).

A :class:`Batch` is what the lake commits atomically: theLook tables for one period, plus, for
synthetic batches, the customers' latent state at the period end and the generator bookkeeping
(seed, next ids, signup rate) that the next simulated batch continues from.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from flywheel.data.batch import Batch
from flywheel.errors import DataError
from flywheel.usecases.churn import catalog
from flywheel.usecases.churn.drift import SCENARIOS
from flywheel.usecases.churn.population import (
    STATE_SCHEMA,
    growing_signup_days,
    new_users,
    signup_rate_at_end,
)
from flywheel.usecases.churn.purchases import draw_orders, orders_tables
from flywheel.usecases.churn.settings import GeneratorSettings

GENERATOR_VERSION = "1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_days(moment: datetime | date) -> float:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return (moment - EPOCH).total_seconds() / 86_400.0


def to_datetime(days: float) -> datetime:
    return EPOCH + timedelta(days=days)


def _next_ids(users: int, orders: pa.Table, items: pa.Table, previous: dict[str, int]) -> dict[str, int]:
    return {
        "users": previous["users"] + users,
        "orders": previous["orders"] + orders.num_rows,
        "order_items": previous["order_items"] + items.num_rows,
        "inventory_items": previous["inventory_items"] + items.num_rows,
    }


def generation_id(config: GeneratorSettings) -> str:
    """The batch id of a generated history: equal parameters give the same id (and the same data)."""
    return (
        f"gen-{config.start:%Y%m%d}-{config.end:%Y%m%d}-s{config.seed}"
        f"-n{config.customers}-p{config.products}-v{GENERATOR_VERSION}"
    )


def generate_batch(config: GeneratorSettings, batch_id: str | None = None) -> Batch:
    """The first batch: catalogue, users signing up over the period, and their orders."""
    rng = np.random.default_rng([config.seed, 0])
    start, end = to_days(config.start), to_days(config.end)
    products = catalog.products_table(config.products, rng)
    signups = growing_signup_days(config.customers, start, end, rng)
    users, state_table = new_users(signups, 1, rng)
    state = {name: state_table.column(name).to_numpy().copy() for name in STATE_SCHEMA.names}
    effects = SCENARIOS["none"](state, start).effects
    ids = {"users": 1, "orders": 1, "order_items": 1, "inventory_items": 1}
    draws = draw_orders(state, start, end, rng, effects)
    orders, items = orders_tables(draws, state, products, end, ids, rng, effects)
    return Batch(
        batch_id=batch_id or generation_id(config),
        kind="generate",
        period_start=to_datetime(start),
        period_end=to_datetime(end),
        tables={
            "distribution_centers": catalog.distribution_centers_table(),
            "products": products,
            "users": users,
            "orders": orders,
            "order_items": items,
        },
        state=pa.table(state, schema=STATE_SCHEMA),
        generator={
            "version": GENERATOR_VERSION,
            "seed": config.seed,
            "sequence": 0,
            "drift": "none",
            "signup_rate_per_day": signup_rate_at_end(config.customers, start, end),
            "next_ids": _next_ids(config.customers, orders, items, ids),
        },
    )


def simulate_batch(
    previous_state: pa.Table,
    generator: dict[str, Any],
    products: pa.Table,
    period_start: datetime,
    days: int,
    drift: str,
    batch_id: str | None = None,
) -> Batch:
    """The next ``days`` after ``period_start``: same customers continue, new ones sign up."""
    if drift not in SCENARIOS:
        raise DataError(f"unknown drift scenario '{drift}'; expected one of: {', '.join(SCENARIOS)}")
    sequence = generator["sequence"] + 1
    rng = np.random.default_rng([generator["seed"], sequence])
    start = to_days(period_start)
    end = start + days
    state = {name: previous_state.column(name).to_numpy().copy() for name in STATE_SCHEMA.names}
    scenario = SCENARIOS[drift](state, start)

    expected = generator["signup_rate_per_day"] * days * scenario.signup_multiplier
    signups = np.sort(start + rng.random(rng.poisson(expected)) * days)
    ids = generator["next_ids"]
    users, new_state = new_users(signups, ids["users"], rng, scenario.signup_mix)
    effects = scenario.effects
    if isinstance(effects.rate_multiplier, np.ndarray):  # extend per-customer effects to the new signups
        pad = new_state.num_rows
        effects = type(effects)(
            price_factor=effects.price_factor,
            rate_multiplier=np.concatenate([effects.rate_multiplier, np.ones(pad)]),
            extra_drop_probability=np.concatenate(
                [
                    np.broadcast_to(effects.extra_drop_probability, effects.rate_multiplier.shape),
                    np.zeros(pad),
                ]
            ),
        )
    for name in STATE_SCHEMA.names:
        state[name] = np.concatenate([state[name], new_state.column(name).to_numpy()])
    draws = draw_orders(state, start, end, rng, effects)
    orders, items = orders_tables(draws, state, products, end, ids, rng, effects)
    period_end = to_datetime(end)
    return Batch(
        batch_id=batch_id or f"sim-{period_start:%Y%m%d}-{period_end:%Y%m%d}",
        kind="simulate",
        period_start=period_start,
        period_end=period_end,
        tables={"users": users, "orders": orders, "order_items": items},
        state=pa.table(state, schema=STATE_SCHEMA),
        generator={
            **generator,
            "sequence": sequence,
            "drift": drift,
            "next_ids": _next_ids(users.num_rows, orders, items, ids),
        },
    )


class ChurnGenerator:
    """The synthetic theLook world as the platform's generator: a first history, then each next
    period continuing every customer's latent state."""

    scenarios = tuple(SCENARIOS)

    def generation_id(self, settings: GeneratorSettings) -> str:
        return generation_id(settings)

    def generate(self, settings: GeneratorSettings, batch_id: str) -> Batch:
        return generate_batch(settings, batch_id)

    def simulate(
        self, lake: Any, previous: dict[str, Any], days: int, drift: str, batch_id: str | None
    ) -> Batch:
        return simulate_batch(
            previous_state=lake.read_state(previous),
            generator=previous["generator"],
            products=lake.read("products"),
            period_start=datetime.fromisoformat(previous["period"]["end"]),
            days=days,
            drift=drift,
            batch_id=batch_id,
        )
