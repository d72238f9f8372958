"""The rollout's statistics (:mod:`flywheel.rollout.stats`): the sticky canary slice, the A/B z-test
against scipy, the sample size by simulated power, and the bandit's convergence on simulated
outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from flywheel.rollout.stats import (
    in_slice,
    pick,
    sample_size,
    slice_position,
    thompson_shares,
    two_proportion_test,
)


@pytest.mark.parametrize("percent", [5, 20, 50])
def test_the_canary_slice_is_the_configured_share_and_sticky(percent: float) -> None:
    entities = range(10_000)
    chosen = {e for e in entities if in_slice("rollout-7", e, percent)}
    assert abs(len(chosen) / 10_000 * 100 - percent) <= 3
    assert chosen == {e for e in entities if in_slice("rollout-7", e, percent)}  # the same every time
    assert {e for e in entities if in_slice("rollout-7", e, percent + 10)} > chosen  # growing keeps them
    other = {e for e in entities if in_slice("rollout-8", e, percent)}
    assert len(chosen & other) < 0.5 * len(chosen)  # another rollout draws another slice


def test_the_slice_bounds() -> None:
    assert not any(in_slice("r", e, 0) for e in range(1000)) and all(
        in_slice("r", e, 100) for e in range(1000)
    )
    assert slice_position("r", 42) == slice_position("r", "42")  # the key as the service sees it
    with pytest.raises(ValueError, match="120"):
        in_slice("r", 1, 120)


@pytest.mark.parametrize(
    ("control", "treatment", "recommendation"),
    [
        ((100, 1000), (150, 1000), "promote"),
        ((150, 1000), (100, 1000), "keep champion"),
        ((100, 1000), (108, 1000), "continue"),
    ],
)
def test_the_z_test_agrees_with_scipy(control, treatment, recommendation) -> None:
    result = two_proportion_test(*control, *treatment)
    table = [[control[0], control[1] - control[0]], [treatment[0], treatment[1] - treatment[0]]]
    chi2, p_value, _, _ = chi2_contingency(table, correction=False)  # the pooled z-test, squared
    assert result.p_value == pytest.approx(p_value, rel=1e-9) and result.z**2 == pytest.approx(chi2, rel=1e-9)
    assert result.lift == pytest.approx(treatment[0] / treatment[1] - control[0] / control[1])
    assert result.ci_low < result.lift < result.ci_high
    assert result.recommendation == recommendation and result.significant == (recommendation != "continue")


def test_the_z_test_without_variation_and_with_bad_counts() -> None:
    same = two_proportion_test(50, 50, 80, 80)
    assert same.p_value == 1.0 and same.recommendation == "continue" and same.relative_lift == 0
    with pytest.raises(ValueError, match="treatment: 11 successes of 10"):
        two_proportion_test(1, 10, 11, 10)
    with pytest.raises(ValueError, match="control: 0 successes of 0"):
        two_proportion_test(0, 0, 1, 10)


def test_the_sample_size_gives_the_power_it_promises() -> None:
    n = sample_size(0.10, 0.03)
    assert two_proportion_test(100, 1000, 100, 1000, min_detectable_effect=0.03).required_per_arm == n
    rng = np.random.default_rng(0)
    trials = 4000
    control, treatment = rng.binomial(n, 0.10, trials), rng.binomial(n, 0.13, trials)
    rejected = np.mean(
        [two_proportion_test(c, n, t, n).significant for c, t in zip(control, treatment, strict=True)]
    )
    assert 0.77 <= rejected <= 0.83  # power 0.8
    null = rng.binomial(n, 0.10, (trials, 2))
    false_alarms = np.mean([two_proportion_test(c, n, t, n).significant for c, t in null])
    assert false_alarms <= 0.065  # alpha 0.05
    with pytest.raises(ValueError, match="must not be 0"):
        sample_size(0.1, 0)


def test_the_bandit_moves_traffic_to_the_better_arm_and_keeps_the_floor() -> None:
    rng = np.random.default_rng(1)
    truth = {"champion": 0.05, "challenger": 0.10}
    outcomes = {arm: (0, 0) for arm in truth}
    shares = thompson_shares(outcomes, floor=0.05, seed=0)
    assert shares == pytest.approx({"champion": 0.5, "challenger": 0.5}, abs=0.05)  # nothing known yet
    for round_ in range(60):  # 60 rounds of 200 requests, allocation recomputed as outcomes arrive
        for arm in truth:
            served = rng.binomial(200, shares[arm])
            converted = rng.binomial(served, truth[arm])
            s, f = outcomes[arm]
            outcomes[arm] = (s + converted, f + served - converted)
        shares = thompson_shares(outcomes, floor=0.05, seed=round_)
    assert shares["challenger"] > 0.9 and shares["champion"] >= 0.05
    assert sum(shares.values()) == pytest.approx(1)
    with pytest.raises(ValueError, match=r"floor 0\.6 for 2 arms"):
        thompson_shares(outcomes, floor=0.6)


def test_pick_follows_the_shares() -> None:
    shares = {"champion": 0.8, "challenger": 0.2}
    assert pick(shares, 0.0) == "champion" and pick(shares, 0.79) == "champion"
    assert pick(shares, 0.8) == "challenger" and pick(shares, 0.999999) == "challenger"
    draws = np.random.default_rng(2).random(10_000)
    assert abs(np.mean([pick(shares, u) == "challenger" for u in draws]) - 0.2) < 0.02
