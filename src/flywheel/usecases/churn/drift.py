"""Drift scenarios for simulated batches, chosen by name.

Each scenario says how the world differs during the new period:

* ``none`` — nothing changes: the same customers continue the same process and signups keep their
  mix and rate, so the distributions of a new batch match the history.
* ``price_shock`` — prices rise 30 % (``sale_price`` = retail × promo × 1.3); price-sensitive
  customers (spend below the median) buy 40 % less often and each of their orders carries an extra
  5-point dropout probability.
* ``acquisition_shift`` — twice the usual signups, arriving mostly from paid social and display
  (Facebook 40 %, Display 30 %) and 70 % aged 16–35: weaker cohorts with lower rates and shorter
  lifetimes through the covariates of the customer model.
* ``engagement_drop`` — existing customers' purchase rates halve and their remaining lifetimes halve;
  both changes persist in their latent state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flywheel.usecases.churn.population import SignupMix
from flywheel.usecases.churn.purchases import PeriodEffects


@dataclass(frozen=True)
class Scenario:
    signup_mix: SignupMix = field(default_factory=SignupMix)
    signup_multiplier: float = 1.0
    effects: PeriodEffects = field(default_factory=PeriodEffects)


ScenarioFn = Callable[[dict[str, np.ndarray], float], Scenario]


def _none(state: dict[str, np.ndarray], start: float) -> Scenario:
    return Scenario()


def _price_shock(state: dict[str, np.ndarray], start: float) -> Scenario:
    sensitive = state["spend"] < np.median(state["spend"])
    return Scenario(
        effects=PeriodEffects(
            price_factor=1.3,
            rate_multiplier=np.where(sensitive, 0.6, 1.0),
            extra_drop_probability=np.where(sensitive, 0.05, 0.0),
        )
    )


def _acquisition_shift(state: dict[str, np.ndarray], start: float) -> Scenario:
    return Scenario(
        signup_mix=SignupMix(traffic_shares=(0.2, 0.05, 0.4, 0.05, 0.3), young_share=0.7),
        signup_multiplier=2.0,
    )


def _engagement_drop(state: dict[str, np.ndarray], start: float) -> Scenario:
    state["lam"] *= 0.5
    alive = state["tau"] > start
    state["tau"][alive] = start + (state["tau"][alive] - start) * 0.5
    return Scenario()


SCENARIOS: dict[str, ScenarioFn] = {
    "none": _none,
    "price_shock": _price_shock,
    "acquisition_shift": _acquisition_shift,
    "engagement_drop": _engagement_drop,
}
