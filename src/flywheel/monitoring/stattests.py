"""Drift statistics against a reference profile, each a small named function.

``(reference_profile_column, current_values, threshold) -> (score, drifted)``, registered under a
name with its default threshold, as Evidently's stattests are. Because the reference is a profile,
the reference distribution is its 101 quantiles (KS, Wasserstein) or its bins/counts (PSI,
Jensen–Shannon, chi-squared).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from flywheel.features.profile import bin_counts, percentile_means, quantiles, sorted_present

EPSILON = 1e-4


@dataclass(frozen=True)
class StatTest:
    name: str
    kinds: tuple[str, ...]
    threshold: float
    # True when a score *below* the threshold means drift (p-values)
    lower_is_drift: bool
    compute: Callable[[dict[str, Any], np.ndarray], float]

    def __call__(
        self, reference: dict[str, Any], current: np.ndarray, threshold: float | None = None
    ) -> tuple[float, bool]:
        limit = self.threshold if threshold is None else threshold
        score = float(self.compute(reference, current))
        return score, (score < limit) if self.lower_is_drift else (score >= limit)


def binned(reference: dict[str, Any], current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current shares on the reference's bins."""
    ref = np.asarray(reference["counts"], dtype=float)
    cur = bin_counts(sorted_present(current), np.asarray(reference["edges"]))
    return ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)


def psi(reference: dict[str, Any], current: np.ndarray) -> float:
    expected, actual = (np.clip(p, EPSILON, None) for p in binned(reference, current))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _reference_cdf(reference: dict[str, Any], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference CDF at ``points`` (sorted) and its left limits there: exact from the value
    frequencies when the profile has them, else interpolated between the 101 quantiles, jumping
    where quantiles repeat."""
    if "values" in reference:
        support = np.asarray(reference["values"])
        cdf = np.concatenate(([0.0], np.cumsum(reference["value_counts"]) / reference["n"]))
        at = cdf[np.searchsorted(support, points, side="right")]
        return at, cdf[np.searchsorted(support, points, side="left")]
    q = np.asarray(reference["quantiles"])
    levels = np.linspace(0, 1, q.size)
    between = np.interp(points, q, levels, left=0.0, right=1.0)
    first, past = np.searchsorted(q, points, side="left"), np.searchsorted(q, points, side="right")
    exact = past > first
    at = np.where(exact, levels[np.maximum(past - 1, 0)], between)
    return at, np.where(exact, levels[np.minimum(first, q.size - 1)], between)


def ks_pvalue(reference: dict[str, Any], current: np.ndarray) -> float:
    """Two-sample KS against the reference profile; both CDFs are compared at each distinct current
    value, right-continuous and as left limits, so ties (integer ages, counts) count as scipy does."""
    values = sorted_present(current)
    n = values.size
    if n == 0:
        return 1.0
    points, counts = np.unique(values, return_counts=True)
    ref_at, ref_below = _reference_cdf(reference, points)
    cur_at = np.cumsum(counts) / n
    cur_below = cur_at - counts / n
    statistic = float(max(np.max(np.abs(cur_at - ref_at)), np.max(np.abs(cur_below - ref_below))))
    effective = n * reference["n"] / (n + reference["n"])
    return float(stats.kstwo.sf(statistic, max(1, round(effective))))


def wasserstein_normed(reference: dict[str, Any], current: np.ndarray) -> float:
    """Wasserstein-1 distance divided by the reference standard deviation: exact, as ∫|F − G| over
    the joint support, when the profile has value frequencies; else ∫|Q_ref − Q_cur| from the
    quantile functions' percentile means."""
    values = sorted_present(current)
    if values.size == 0:
        return 0.0
    if "values" in reference:
        points, counts = np.unique(values, return_counts=True)
        support = np.union1d(points, reference["values"])
        ref_cdf = _reference_cdf(reference, support)[0]
        cur_cdf = np.concatenate(([0.0], np.cumsum(counts) / values.size))[
            np.searchsorted(points, support, side="right")
        ]
        distance_ = float(np.sum(np.abs(ref_cdf - cur_cdf)[:-1] * np.diff(support)))
    elif "percentile_means" in reference:
        gap = np.abs(percentile_means(values) - np.asarray(reference["percentile_means"]))
        distance_ = float(gap.mean())
    else:  # a profile from before percentile means: between the quantile functions
        levels = np.linspace(0, 1, len(reference["quantiles"]))
        gap = np.abs(quantiles(values, levels) - np.asarray(reference["quantiles"]))
        distance_ = float(np.trapezoid(gap, levels))
    return distance_ / max(reference["std"], 1e-12)


def jensenshannon_numeric(reference: dict[str, Any], current: np.ndarray) -> float:
    expected, actual = binned(reference, current)
    return float(distance.jensenshannon(expected, actual))


def categorical_counts(
    reference: dict[str, Any], current: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories (reference ∪ current, sorted) with their reference and current counts; ``current``
    may be the values or their counts (a mapping), which drift checks compute once per column."""
    observed = current if isinstance(current, Mapping) else category_counts(current)
    keys = sorted(set(reference["counts"]) | set(observed))
    return (
        keys,
        np.array([reference["counts"].get(k, 0) for k in keys], dtype=float),
        np.array([observed.get(k, 0) for k in keys], dtype=float),
    )


def category_counts(values: Any) -> dict[str, int]:
    """Counts of the non-missing values, keyed by their text (hash-based: no sort, no Python loop)."""
    counts = pd.Series(values, copy=False).value_counts(dropna=True)
    return {str(k): int(v) for k, v in counts.items()}


def chisquare_pvalue(reference: dict[str, Any], current: np.ndarray) -> float:
    _, ref, cur = categorical_counts(reference, current)
    if cur.sum() == 0:
        return 1.0
    expected = np.clip(ref / ref.sum(), EPSILON, None)
    expected = expected / expected.sum() * cur.sum()
    return float(stats.chisquare(cur, expected).pvalue)


def jensenshannon_categorical(reference: dict[str, Any], current: np.ndarray) -> float:
    _, ref, cur = categorical_counts(reference, current)
    return float(distance.jensenshannon(ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)))


STATTESTS: dict[str, StatTest] = {
    test.name: test
    for test in (
        StatTest("psi", ("numeric",), 0.1, False, psi),
        StatTest("ks", ("numeric",), 0.05, True, ks_pvalue),
        StatTest("wasserstein", ("numeric",), 0.1, False, wasserstein_normed),
        StatTest("jensenshannon", ("numeric",), 0.1, False, jensenshannon_numeric),
        StatTest("chisquare", ("categorical",), 0.05, True, chisquare_pvalue),
        StatTest("jensenshannon_categorical", ("categorical",), 0.1, False, jensenshannon_categorical),
    )
}
PSI_MAJOR = 0.25


def default_test(kind: str, rows: int) -> StatTest:
    """As Evidently chooses: a p-value test on small samples (≤ 1000 rows), a distance with an
    effect-size threshold on large ones, so that big samples do not flag every column."""
    if kind == "categorical":
        return STATTESTS["chisquare" if rows <= 1000 else "jensenshannon_categorical"]
    return STATTESTS["ks" if rows <= 1000 else "wasserstein"]
