"""Drift statistics against scipy on fixed data, threshold behaviour, and profile size."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from flywheel.features.profile import build_profile, categorical_profile, numeric_profile
from flywheel.monitoring.drift import compare
from flywheel.monitoring.stattests import STATTESTS, default_test

RNG = np.random.default_rng(0)
REFERENCE = RNG.normal(10, 2, 200_000)


@pytest.fixture(scope="module")
def profile() -> dict:
    return numeric_profile(REFERENCE)


def test_ks_matches_scipy_two_sample(profile: dict) -> None:
    current = RNG.normal(10.3, 2, 800)
    ours = STATTESTS["ks"](profile, current)[0]
    theirs = stats.ks_2samp(REFERENCE, current).pvalue
    assert ours == pytest.approx(theirs, rel=0.15, abs=1e-6)
    assert STATTESTS["ks"](profile, RNG.normal(11, 2, 800))[1] is True


def test_wasserstein_matches_scipy(profile: dict) -> None:
    current = RNG.normal(10.5, 2.5, 50_000)
    ours = STATTESTS["wasserstein"](profile, current)[0]
    theirs = stats.wasserstein_distance(REFERENCE, current) / REFERENCE.std()
    assert ours == pytest.approx(theirs, rel=0.01)


def test_psi_and_jensenshannon_match_the_formulas_on_the_reference_bins(profile: dict) -> None:
    current = RNG.normal(11, 2, 50_000)
    edges = np.asarray(profile["edges"])
    expected = np.asarray(profile["counts"]) / profile["n"]
    actual = (
        np.bincount(np.searchsorted(edges, current, side="right"), minlength=edges.size + 1) / current.size
    )
    assert STATTESTS["jensenshannon"](profile, current)[0] == pytest.approx(
        distance.jensenshannon(expected, actual)
    )
    e, a = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    assert STATTESTS["psi"](profile, current)[0] == pytest.approx(np.sum((a - e) * np.log(a / e)))
    assert STATTESTS["psi"](profile, current)[1] is True
    assert STATTESTS["psi"](profile, RNG.normal(10, 2, 50_000))[1] is False


def test_chisquare_matches_scipy() -> None:
    reference = categorical_profile(pd.Series(["a"] * 500 + ["b"] * 300 + ["c"] * 200))
    current = np.array(["a"] * 40 + ["b"] * 40 + ["c"] * 20)
    theirs = stats.chisquare([40, 40, 20], np.array([0.5, 0.3, 0.2]) * 100).pvalue
    assert STATTESTS["chisquare"](reference, current)[0] == pytest.approx(theirs)
    js = distance.jensenshannon([0.5, 0.3, 0.2], [0.4, 0.4, 0.2])
    assert STATTESTS["jensenshannon_categorical"](reference, current)[0] == pytest.approx(js)


def test_defaults_follow_type_and_sample_size() -> None:
    assert default_test("numeric", 500).name == "ks"
    assert default_test("numeric", 50_000).name == "wasserstein"
    assert default_test("categorical", 500).name == "chisquare"
    assert default_test("categorical", 50_000).name == "jensenshannon_categorical"


def test_large_no_drift_samples_raise_few_alarms_and_real_drift_is_found() -> None:
    frame = pd.DataFrame({f"x{i}": RNG.gamma(2 + i % 3, 1 + i, 300_000) for i in range(20)})
    frame["country"] = RNG.choice(["JP", "US", "BR"], 300_000, p=[0.5, 0.3, 0.2])
    profile = build_profile(frame, ["country"])
    replay = pd.DataFrame({f"x{i}": RNG.gamma(2 + i % 3, 1 + i, 300_000) for i in range(20)})
    replay["country"] = RNG.choice(["JP", "US", "BR"], 300_000, p=[0.5, 0.3, 0.2])
    quiet = compare(profile, replay)
    assert sum(c.drifted for c in quiet.columns) <= 0.05 * len(quiet.columns) and not quiet.dataset_drift
    shifted = replay.copy()
    shifted["x3"] = shifted["x3"] * 1.3
    shifted["country"] = RNG.choice(["JP", "US", "BR"], 300_000, p=[0.2, 0.3, 0.5])
    loud = compare(profile, shifted)
    assert {c.column for c in loud.columns if c.drifted} == {"x3", "country"}


def test_profile_size_does_not_grow_with_rows() -> None:
    small = json.dumps(numeric_profile(RNG.normal(size=10_000)))
    large = json.dumps(numeric_profile(RNG.normal(size=1_000_000)))
    assert abs(len(large) - len(small)) < 200 and len(large) < 6_000


def test_ks_handles_ties_in_integer_data_like_scipy() -> None:
    """Integer columns (ages, counts) put whole percents of the reference on one value: the reference
    CDF must jump there, not interpolate (regression: p-values were 4× too small on ages)."""
    rng = np.random.default_rng(3)
    reference = rng.integers(16, 70, 200_000)
    profile = numeric_profile(reference)
    for shift, drifted in ((0, False), (3, True)):
        current = rng.integers(16 + shift, 70 + shift, 600)
        ours, flagged = STATTESTS["ks"](profile, current)
        theirs = stats.ks_2samp(reference, current).pvalue
        assert flagged is drifted and bool(theirs < 0.05) is drifted
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-12)  # exact frequencies in the profile


def test_wasserstein_is_exact_on_integer_data() -> None:
    rng = np.random.default_rng(4)
    reference = rng.poisson(2.0, 100_000)
    current = rng.poisson(2.6, 3_000)
    ours = STATTESTS["wasserstein"](numeric_profile(reference), current)[0]
    theirs = stats.wasserstein_distance(reference, current) / reference.std()
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_a_statistic_for_the_wrong_column_type_is_a_clear_error() -> None:
    from flywheel.config import apply_overrides, default_config
    from flywheel.errors import ConfigError

    profile = build_profile(pd.DataFrame({"x": RNG.normal(0, 1, 500), "c": ["a", "b"] * 250}), ["c"])
    current = pd.DataFrame({"x": RNG.normal(0, 1, 500), "c": ["a"] * 500})
    assert compare(profile, current, tests={"x": "ks", "c": "chisquare"}).columns[1].drifted
    with pytest.raises(ConfigError, match=r"monitoring.tests.c: psi is a test for numeric columns"):
        compare(profile, current, tests={"c": "psi"})
    with pytest.raises(ConfigError, match=r"monitoring\.tests\.x"):
        apply_overrides(default_config(), {"monitoring.tests": {"x": "t-test"}})
