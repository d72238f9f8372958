"""What customers do over a period: orders and order items from the latent state.

Orders are drawn round by round: every round gives each still-active customer their next order, so
the work is vectorized over customers and the number of rounds is the largest order count of one
customer. Purchase times follow a Poisson process in *operational time* (the cumulative seasonal
intensity), which adds the Black-Friday and December peaks. Because the process is memoryless, a later
period restarts every alive customer's clock at the period start and continues the same process.

An order's fate (cancelled, returned, kept) comes from the customer's latent propensities; its
lifecycle timestamps (shipped within 3 days, delivered within 5 more, returned within 7 more) are cut
at the period end: whatever has not happened by then is null and the status says so (Processing,
Shipped, Complete). Every item of an order shares the order's status and timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from flywheel.data.schema import TIMESTAMP
from flywheel.usecases.churn.population import US_PER_DAY
from flywheel.usecases.churn.tables import TABLES

RETURN_DROP_BUMP = 0.25
CANCEL_DROP_BUMP = 0.15
PROMO_SHARE = 0.2


def seasonality(days: np.ndarray) -> np.ndarray:
    """Relative purchase intensity on the given days since epoch (mean ≈ 1 over a year)."""
    day_of_year = (days.astype("datetime64[D]") - days.astype("datetime64[Y]")).astype(float)
    black_friday = 0.8 * np.exp(-0.5 * ((day_of_year - 330.0) / 6.0) ** 2)
    december = 0.5 * np.exp(-0.5 * ((day_of_year - 350.0) / 10.0) ** 2)
    return (1.0 + black_friday + december) / 1.035


@dataclass(frozen=True)
class PeriodEffects:
    """How a drift scenario changes behaviour inside one period (identity by default)."""

    price_factor: float = 1.0
    rate_multiplier: np.ndarray | float = 1.0
    extra_drop_probability: np.ndarray | float = 0.0


@dataclass(frozen=True)
class OrderDraws:
    user_index: np.ndarray  # row in the state table
    created: np.ndarray  # days since epoch
    cancelled: np.ndarray
    returned: np.ndarray


def draw_orders(
    state: dict[str, np.ndarray], start: float, end: float, rng: np.random.Generator, effects: PeriodEffects
) -> OrderDraws:
    """Draw every order in ``[start, end)``; shortens ``state["tau"]`` in place for dropouts."""
    grid = np.arange(np.floor(start), np.ceil(end) + 1.0)
    cumulative = np.concatenate([[0.0], np.cumsum(seasonality(grid[:-1]))])

    def next_after(t: np.ndarray, rate: np.ndarray) -> np.ndarray:
        target = np.interp(t, grid, cumulative) + rng.exponential(1.0, t.size) / rate
        return np.where(target >= cumulative[-1], np.inf, np.interp(target, cumulative, grid))

    rate = state["lam"] * effects.rate_multiplier
    extra_drop = np.broadcast_to(effects.extra_drop_probability, rate.shape)
    started = state["first_order_at"] < start
    t = state["first_order_at"].copy()
    t[started] = next_after(np.full(started.sum(), start), rate[started])
    index = np.flatnonzero(state["buyer"] & (t >= start) & (t < end) & (t < state["tau"]))
    t = t[index]

    chunks: list[tuple[np.ndarray, ...]] = []
    while index.size:
        cancelled = rng.random(index.size) < state["kappa"][index]
        returned = ~cancelled & (rng.random(index.size) < state["rho"][index])
        chunks.append((index, t, cancelled, returned))
        p_drop = (
            state["p_drop"][index]
            + RETURN_DROP_BUMP * returned
            + CANCEL_DROP_BUMP * cancelled
            + extra_drop[index]
        )
        dropped = rng.random(index.size) < p_drop
        state["tau"][index[dropped]] = np.minimum(state["tau"][index[dropped]], t[dropped])
        nxt = next_after(t, rate[index])
        keep = ~dropped & (nxt < end) & (nxt < state["tau"][index])
        index, t = index[keep], nxt[keep]

    if not chunks:
        empty = np.array([], dtype=np.int64)
        return OrderDraws(empty, np.array([]), empty.astype(bool), empty.astype(bool))
    parts = [np.concatenate(col) for col in zip(*chunks, strict=True)]
    order = np.argsort(parts[1], kind="stable")
    return OrderDraws(*(p[order] for p in parts))


def _timestamps(days: np.ndarray, valid: np.ndarray) -> pa.Array:
    micros = np.round(np.where(valid, days, 0.0) * US_PER_DAY).astype(np.int64)
    return pa.array(micros, mask=~valid).cast(TIMESTAMP)


def orders_tables(
    draws: OrderDraws,
    state: dict[str, np.ndarray],
    products: pa.Table,
    end: float,
    next_ids: dict[str, int],
    rng: np.random.Generator,
    effects: PeriodEffects,
) -> tuple[pa.Table, pa.Table]:
    """Turn order draws into theLook ``orders`` and ``order_items`` tables cut at ``end``."""
    n = draws.created.size
    user_id = state["user_id"][draws.user_index]
    gender = state["gender"][draws.user_index]
    items_per_order = 1 + np.minimum(rng.poisson(0.6 * state["spend"][draws.user_index]), 3)

    shipped = draws.created + rng.uniform(0.05, 3.0, n)
    delivered = shipped + rng.uniform(0.5, 5.0, n)
    returned = delivered + rng.uniform(0.5, 7.0, n)
    live = ~draws.cancelled
    has_shipped = live & (shipped < end)
    has_delivered = has_shipped & (delivered < end)
    has_returned = has_delivered & draws.returned & (returned < end)
    status = np.select(
        [draws.cancelled, has_returned, has_delivered, has_shipped],
        ["Cancelled", "Returned", "Complete", "Shipped"],
        "Processing",
    )
    order_ids = np.arange(next_ids["orders"], next_ids["orders"] + n, dtype=np.int64)
    created_ts = _timestamps(draws.created, np.ones(n, dtype=bool))
    shipped_ts = _timestamps(shipped, has_shipped)
    delivered_ts = _timestamps(delivered, has_delivered)
    returned_ts = _timestamps(returned, has_returned)
    orders = pa.table(
        [
            order_ids,
            user_id,
            pa.array(status),
            pa.array(np.where(gender == 0, "M", "F")),
            created_ts,
            returned_ts,
            shipped_ts,
            delivered_ts,
            items_per_order.astype(np.int64),
        ],
        schema=TABLES["orders"].arrow_schema,
    )

    row = np.repeat(np.arange(n), items_per_order)
    m = row.size
    product_id = _draw_products(products, gender[row], rng)
    promo = np.where(rng.random(n) < PROMO_SHARE, rng.uniform(0.7, 0.9, n), 1.0)
    retail = products.column("retail_price").to_numpy()[product_id - 1]
    sale_price = np.round(retail * promo[row] * effects.price_factor, 2)
    item_ids = np.arange(next_ids["order_items"], next_ids["order_items"] + m, dtype=np.int64)
    inventory_ids = np.arange(next_ids["inventory_items"], next_ids["inventory_items"] + m, dtype=np.int64)
    take = pa.array(row)
    items = pa.table(
        [
            item_ids,
            order_ids[row],
            user_id[row],
            product_id,
            inventory_ids,
            pa.array(status).take(take),
            created_ts.take(take),
            shipped_ts.take(take),
            delivered_ts.take(take),
            returned_ts.take(take),
            sale_price,
        ],
        schema=TABLES["order_items"].arrow_schema,
    )
    return orders, items


def _draw_products(products: pa.Table, gender: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Product ids: 90 % from the buyer's own department, popularity ∝ 1 / (rank + 10) within it."""
    department = products.column("department").to_numpy(zero_copy_only=False)
    ids = products.column("id").to_numpy()
    own = rng.random(gender.size) < 0.9
    wants_women = np.where(own, gender == 1, gender == 0)
    out = np.empty(gender.size, dtype=np.int64)
    for dept_value, mask in (("Women", wants_women), ("Men", ~wants_women)):
        pool = ids[department == dept_value]
        if pool.size == 0:  # a tiny catalogue may lack a department
            pool = ids
        weights = 1.0 / (np.arange(pool.size) + 10.0)
        cdf = np.cumsum(weights) / weights.sum()
        picks = np.searchsorted(cdf, rng.random(mask.sum()), side="right")
        out[mask] = pool[np.minimum(picks, pool.size - 1)]
    return out
