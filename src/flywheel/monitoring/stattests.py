"""Drift statistics against a reference profile, each a small named function.

``(reference_profile_column, current_values, threshold) -> (score, drifted)``, registered under a
name with its default threshold, as Evidently's stattests are. Because the reference is a profile,
the reference distribution is its 101 quantiles (KS, Wasserstein) or its bins/counts (PSI,
Jensen–Shannon, chi-squared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import distance

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


def _present(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def binned(reference: dict[str, Any], current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(reference["edges"])
    ref = np.asarray(reference["counts"], dtype=float)
    cur = np.bincount(np.searchsorted(edges, _present(current), side="right"), minlength=edges.size + 1)
    return ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)


def psi(reference: dict[str, Any], current: np.ndarray) -> float:
    expected, actual = (np.clip(p, EPSILON, None) for p in binned(reference, current))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _reference_cdf(reference: dict[str, Any], points: np.ndarray) -> np.ndarray:
    quantiles = np.asarray(reference["quantiles"])
    levels = np.linspace(0, 1, quantiles.size)
    # a step at repeated quantiles: take the highest level reached at each point
    return np.interp(points, quantiles, levels, left=0.0, right=1.0)


def ks_pvalue(reference: dict[str, Any], current: np.ndarray) -> float:
    values = np.sort(_present(current))
    n = values.size
    if n == 0:
        return 1.0
    ref = _reference_cdf(reference, values)
    ecdf_hi = np.arange(1, n + 1) / n
    ecdf_lo = np.arange(0, n) / n
    statistic = float(max(np.max(ecdf_hi - ref), np.max(ref - ecdf_lo)))
    effective = n * reference["n"] / (n + reference["n"])
    return float(stats.kstwo.sf(statistic, max(1, round(effective))))


def wasserstein_normed(reference: dict[str, Any], current: np.ndarray) -> float:
    values = _present(current)
    if values.size == 0:
        return 0.0
    levels = np.linspace(0, 1, len(reference["quantiles"]))
    gap = np.abs(np.quantile(values, levels) - np.asarray(reference["quantiles"]))
    distance_ = float(np.trapezoid(gap, levels))
    return distance_ / max(reference["std"], 1e-12)


def jensenshannon_numeric(reference: dict[str, Any], current: np.ndarray) -> float:
    expected, actual = binned(reference, current)
    return float(distance.jensenshannon(expected, actual))


def categorical_counts(
    reference: dict[str, Any], current: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Categories (reference ∪ current, sorted) with their reference and current counts."""
    values, counts = np.unique(
        np.asarray([str(v) for v in current if v is not None and v == v]), return_counts=True
    )
    observed = dict(zip(values.tolist(), counts.tolist(), strict=True))
    keys = sorted(set(reference["counts"]) | set(observed))
    return (
        keys,
        np.array([reference["counts"].get(k, 0) for k in keys], dtype=float),
        np.array([observed.get(k, 0) for k in keys], dtype=float),
    )


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
