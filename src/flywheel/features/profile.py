"""Reference profiles: a compact, fixed-size summary of a model's training data.

Per numeric column: 101 quantiles, the mean of each percentile, bin edges (every 5 % quantile of the
training data, twenty bins) with their counts, mean, standard deviation and the missing count, and —
for a column with at most 100 distinct values — the exact value frequencies; per categorical column:
category counts; the predicted probability is profiled like a numeric column (multiclass: the
predicted class, like a categorical column). Drift checks need only
this — never the training rows — and its size does not grow with the number of rows.

It lives with the features it describes: training writes it beside each model
(``PROFILE_ARTIFACT``), monitoring reads it; neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

BINS = 20
QUANTILES = np.linspace(0, 1, 101)
EDGE_STEP = (QUANTILES.size - 1) // BINS  # bin edges are every fifth quantile: 5 %, 10 %, … 95 %
PERCENTILES = 100
MAX_DISTINCT = 100  # a numeric column with at most this many values keeps its exact frequencies
PROFILE_ARTIFACT = "reference_profile.json"  # the profile's name among a training run's artifacts


class SortedValues(np.ndarray):
    """A float array known to be sorted with no NaN: ``sorted_present`` returns it as it is."""


def sorted_present(values: np.ndarray) -> SortedValues:
    """The non-missing values, sorted. One sort (NumPy's SIMD sort) gives every quantile and every
    bin count by indexing and binary search — the cost of a numeric column is this sort."""
    if isinstance(values, SortedValues):
        return values
    values = np.asarray(values, dtype=float)
    return np.sort(values[~np.isnan(values)]).view(SortedValues)


def quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``np.quantile(ordered, levels)`` (linear interpolation) for already sorted values."""
    position = levels * (ordered.size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, ordered.size - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentile_means(ordered: np.ndarray) -> np.ndarray:
    """The mean of each 1 % slice of the sorted values: the quantile function averaged per
    percentile, whose differences integrate to the Wasserstein distance without the noise of the
    sample minimum and maximum."""
    bounds = np.round(np.linspace(0, ordered.size, PERCENTILES + 1)).astype(np.int64)
    sums = np.concatenate(([0.0], np.cumsum(ordered, dtype=float)))[bounds]
    sizes = np.maximum(np.diff(bounds), 1)
    # a slice emptied by rounding (fewer than 100 values) takes the value at its position
    empty = np.diff(bounds) == 0
    means = np.diff(sums) / sizes
    means[empty] = ordered[np.minimum(bounds[:-1][empty], ordered.size - 1)]
    return means


def bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin ``[edges[i-1], edges[i])`` (open at both ends) of sorted values."""
    below = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate(([0], below, [ordered.size])))


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    ordered = sorted_present(values)
    if ordered.size == 0:
        return {"kind": "numeric", "n": 0, "missing": int(values.size)}
    levels = quantiles(ordered, QUANTILES)
    edges = np.unique(levels[EDGE_STEP:-1:EDGE_STEP])
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    exact = {}
    if starts.size <= MAX_DISTINCT:  # integers such as ages and counts: the exact distribution
        exact = {
            "values": ordered[starts].tolist(),
            "value_counts": np.diff(np.append(starts, ordered.size)).tolist(),
        }
    return {
        **exact,
        "kind": "numeric",
        "n": int(ordered.size),
        "missing": int(values.size - ordered.size),
        "quantiles": levels.tolist(),
        "percentile_means": percentile_means(ordered).tolist(),
        "edges": edges.tolist(),
        "counts": bin_counts(ordered, edges).tolist(),
        "mean": float(ordered.mean()),
        "std": float(ordered.std()),
    }


def categorical_profile(values: pd.Series) -> dict[str, Any]:
    present = values.dropna().astype(str)
    return {
        "kind": "categorical",
        "n": int(present.size),
        "missing": int(values.isna().sum()),
        "counts": {k: int(v) for k, v in present.value_counts().items()},
    }


def build_profile(
    frame: pd.DataFrame,
    categorical: list[str],
    probabilities: np.ndarray | None = None,
    classes: Sequence[str] = (),
) -> dict[str, Any]:
    columns = {}
    for name in frame.columns:
        if name in categorical:
            columns[name] = categorical_profile(frame[name])
        else:
            columns[name] = numeric_profile(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float))
    profile: dict[str, Any] = {"version": 1, "rows": len(frame), "columns": columns}
    if probabilities is not None and np.ndim(probabilities) == 2:
        profile["prediction"] = categorical_profile(predicted_classes(probabilities, classes))
    elif probabilities is not None:
        profile["prediction"] = numeric_profile(np.asarray(probabilities, dtype=float))
    return profile


def predicted_classes(probabilities: np.ndarray, classes: Sequence[str] = ()) -> pd.Series:
    """The most probable class of each row, by name (by code when the classes are unnamed)."""
    names = np.asarray(list(classes) or [str(k) for k in range(probabilities.shape[1])], dtype=object)
    return pd.Series(names[np.asarray(probabilities).argmax(axis=1)])
