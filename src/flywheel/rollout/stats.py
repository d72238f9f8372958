"""The statistics of a rollout, as small pure functions.

- :func:`in_slice`: a canary's sticky slice — a stable hash of the rollout and the entity key, so the
  same entity always gets the same arm within one rollout (every replica agrees, nothing is stored),
  and another rollout draws another slice.
- :func:`two_proportion_test`: the A/B verdict on a binary outcome (a conversion, a subscription): the pooled
  two-proportion z-test, two-sided, with the lift, its confidence interval and a recommendation;
  :func:`sample_size` is the size per arm that detects a given absolute difference.
- :func:`thompson_shares`: the bandit's allocation — each arm's probability of being the best under
  Beta(1 + successes, 1 + failures) posteriors, estimated by sampling, with a floor share per arm so
  no arm starves (its outcomes keep arriving).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

_SCALE = float(2**64)


def slice_position(rollout: str, entity: object) -> float:
    """Where the entity falls in [0, 1) for ``rollout``: uniform over entities, the same every time."""
    digest = hashlib.blake2b(f"{rollout}\x1f{entity}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def in_slice(rollout: str, entity: object, percent: float) -> bool:
    """Whether the entity is in the ``percent`` (0–100) of entities the rollout's challenger serves."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent {percent} is not within 0–100")
    return slice_position(rollout, entity) < percent / 100


@dataclass(frozen=True)
class ABResult:
    control_rate: float
    treatment_rate: float
    lift: float  # treatment − control, absolute
    relative_lift: float | None  # lift / control rate (None when the control rate is 0)
    ci_low: float  # the lift's (1 − alpha) confidence interval (unpooled standard error)
    ci_high: float
    z: float
    p_value: float
    significant: bool
    recommendation: str  # promote | keep champion | continue
    required_per_arm: int | None  # for min_detectable_effect at this control rate (None: not asked)


def two_proportion_test(
    control_successes: int,
    control_n: int,
    treatment_successes: int,
    treatment_n: int,
    alpha: float = 0.05,
    power: float = 0.8,
    min_detectable_effect: float | None = None,
) -> ABResult:
    """The pooled two-proportion z-test of treatment (the challenger) against control (the champion).

    A higher outcome rate is better. The recommendation is ``promote`` when the treatment is
    significantly better, ``keep champion`` when significantly worse, and ``continue`` otherwise —
    until the arms reach ``required_per_arm`` a non-significant result says little.

    Raises:
        ValueError: counts that are negative, exceed their totals, or an arm without observations.
    """
    for name, successes, n in (
        ("control", control_successes, control_n),
        ("treatment", treatment_successes, treatment_n),
    ):
        if n <= 0 or not 0 <= successes <= n:
            raise ValueError(
                f"{name}: {successes} successes of {n} observations; expected 0 ≤ successes ≤ n, n > 0"
            )
    p1, p2 = control_successes / control_n, treatment_successes / treatment_n
    pooled = (control_successes + treatment_successes) / (control_n + treatment_n)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / treatment_n))
    lift = p2 - p1
    if pooled_se == 0:  # both arms all successes or all failures: no evidence of a difference
        z, p_value = 0.0, 1.0
    else:
        z = lift / pooled_se
        p_value = float(2 * norm.sf(abs(z)))
    se = math.sqrt(p1 * (1 - p1) / control_n + p2 * (1 - p2) / treatment_n)
    margin = float(norm.ppf(1 - alpha / 2)) * se
    significant = p_value < alpha
    recommendation = "continue" if not significant else "promote" if lift > 0 else "keep champion"
    required = (
        sample_size(p1, min_detectable_effect, alpha, power) if min_detectable_effect is not None else None
    )
    return ABResult(
        control_rate=p1,
        treatment_rate=p2,
        lift=lift,
        relative_lift=lift / p1 if p1 > 0 else None,
        ci_low=lift - margin,
        ci_high=lift + margin,
        z=z,
        p_value=p_value,
        significant=significant,
        recommendation=recommendation,
        required_per_arm=required,
    )


def sample_size(base_rate: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm for a two-sided test at ``alpha`` to detect an absolute difference of
    ``effect`` from ``base_rate`` with probability ``power`` (the usual normal approximation)."""
    if effect == 0:
        raise ValueError("the minimum detectable effect must not be 0")
    treated = base_rate + effect
    if not (0 <= base_rate <= 1 and 0 <= treated <= 1):
        raise ValueError(f"rates {base_rate} and {treated} must both lie within 0–1")
    mean = (base_rate + treated) / 2
    z_alpha, z_power = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
        base_rate * (1 - base_rate) + treated * (1 - treated)
    )
    return math.ceil(spread**2 / effect**2)


def thompson_shares(
    outcomes: Mapping[str, tuple[int, int]],
    floor: float = 0.05,
    draws: int = 4000,
    seed: int | None = None,
) -> dict[str, float]:
    """Each arm's share of traffic: ``floor`` plus its part of the rest in proportion to its
    probability of having the highest outcome rate, given ``outcomes`` (arm → successes, failures)
    and uniform Beta(1, 1) priors.

    Raises:
        ValueError: no arms, negative counts, or a floor the arms cannot all have.
    """
    if not outcomes:
        raise ValueError("a bandit needs at least one arm")
    if not 0 <= floor * len(outcomes) <= 1:
        raise ValueError(f"floor {floor} for {len(outcomes)} arms: expected 0 ≤ floor × arms ≤ 1")
    if any(s < 0 or f < 0 for s, f in outcomes.values()):
        raise ValueError(f"outcome counts must not be negative: {dict(outcomes)}")
    arms = list(outcomes)
    rng = np.random.default_rng(seed)
    samples = np.column_stack([rng.beta(1 + s, 1 + f, size=draws) for s, f in outcomes.values()])
    best = np.bincount(samples.argmax(axis=1), minlength=len(arms)) / draws
    rest = 1 - floor * len(arms)
    return {arm: floor + rest * float(share) for arm, share in zip(arms, best, strict=True)}


def pick(shares: Mapping[str, float], position: float) -> str:
    """The arm whose cumulative share covers ``position`` in [0, 1) (a uniform draw per request)."""
    total = 0.0
    for arm, share in shares.items():
        total += share
        if position < total:
            return arm
    return next(reversed(shares))  # rounding left position ≥ the sum: the last arm
