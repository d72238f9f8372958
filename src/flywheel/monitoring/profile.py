"""Reference profiles: a compact, fixed-size summary of a model's training data.

Per numeric column: 101 quantiles, bin edges (deciles of the training data, twenty bins) with their
counts, mean, standard deviation and the missing count; per categorical column: category counts;
the predicted probability is profiled like a numeric column. Drift checks need only this — never
the training rows — and its size does not grow with the number of rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

BINS = 20
QUANTILES = np.linspace(0, 1, 101)


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    if present.size == 0:
        return {"kind": "numeric", "n": 0, "missing": int(values.size)}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=edges.size + 1)
    return {
        "kind": "numeric",
        "n": int(present.size),
        "missing": int(values.size - present.size),
        "quantiles": np.quantile(present, QUANTILES).tolist(),
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "mean": float(present.mean()),
        "std": float(present.std()),
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
    frame: pd.DataFrame, categorical: list[str], probabilities: np.ndarray | None = None
) -> dict[str, Any]:
    columns = {}
    for name in frame.columns:
        if name in categorical:
            columns[name] = categorical_profile(frame[name])
        else:
            columns[name] = numeric_profile(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float))
    profile: dict[str, Any] = {"version": 1, "rows": len(frame), "columns": columns}
    if probabilities is not None:
        profile["prediction"] = numeric_profile(np.asarray(probabilities, dtype=float))
    return profile
