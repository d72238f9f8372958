"""Drift of current data against a reference profile: per column, for the prediction, and overall."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flywheel.errors import ConfigError
from flywheel.features.profile import sorted_present
from flywheel.monitoring.stattests import (
    PSI_MAJOR,
    STATTESTS,
    binned,
    categorical_counts,
    category_counts,
    default_test,
)

TOP_CATEGORIES = 15


@dataclass
class ColumnDrift:
    column: str
    kind: str
    test: str
    score: float
    threshold: float
    drifted: bool
    psi: float | None
    rows: int
    # the plot: bins (reference quantile bins, or the top categories) and each side's share in them
    bins: list[str] = field(default_factory=list)
    reference_share: list[float] = field(default_factory=list)
    current_share: list[float] = field(default_factory=list)


@dataclass
class DriftReport:
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift] = field(default_factory=list)
    prediction: ColumnDrift | None = None
    share_threshold: float = 0.5

    @property
    def drifted_share(self) -> float:
        return sum(c.drifted for c in self.columns) / max(len(self.columns), 1)

    @property
    def dataset_drift(self) -> bool:
        return self.drifted_share >= self.share_threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "dataset_drift": self.dataset_drift,
            "drifted_share": self.drifted_share,
            "share_threshold": self.share_threshold,
            "prediction": asdict(self.prediction) if self.prediction else None,
            "columns": [asdict(c) for c in self.columns],
        }


def _column(name: str, reference: dict[str, Any], values: np.ndarray, test_name: str | None) -> ColumnDrift:
    kind = reference["kind"]
    # summarize once: sorted values (numeric) or counts (categorical); every statistic takes either
    present = category_counts(values) if kind == "categorical" else sorted_present(values)
    rows = sum(present.values()) if kind == "categorical" else present.size
    test = STATTESTS[test_name] if test_name else default_test(kind, rows)
    if kind not in test.kinds:
        usable = ", ".join(t.name for t in STATTESTS.values() if kind in t.kinds)
        raise ConfigError(
            f"monitoring.tests.{name}: {test.name} is a test for {' or '.join(test.kinds)} columns; "
            f"{name} is {kind} (use one of {usable})"
        )
    score, drifted = test(reference, present)
    psi = STATTESTS["psi"](reference, present)[0] if kind == "numeric" else None
    bins, expected, actual = histogram(reference, present)
    return ColumnDrift(
        name, kind, test.name, score, test.threshold, drifted, psi, rows, bins, expected, actual
    )


def histogram(reference: dict[str, Any], values: np.ndarray) -> tuple[list[str], list[float], list[float]]:
    """Reference and current shares on the reference's bins (numeric) or its top categories; the
    size is fixed by the profile, never by the number of rows."""
    if reference["kind"] == "numeric":
        expected, actual = binned(reference, values)
        edges = [f"{e:.4g}" for e in reference["edges"]]
        bins = [f"< {edges[0]}"] if edges else ["all"]
        bins += [f"{a} – {b}" for a, b in itertools.pairwise(edges)]
        bins += [f"≥ {edges[-1]}"] if edges else []
        return bins, np.round(expected, 5).tolist(), np.round(actual, 5).tolist()
    keys, ref, cur = categorical_counts(reference, values)
    ref, cur = ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)
    top = np.argsort(-np.maximum(ref, cur))[:TOP_CATEGORIES]
    rest = np.setdiff1d(np.arange(len(keys)), top)
    bins = [keys[i] for i in top] + (["(other)"] if rest.size else [])
    expected = [*ref[top].tolist(), *([ref[rest].sum()] if rest.size else [])]
    actual = [*cur[top].tolist(), *([cur[rest].sum()] if rest.size else [])]
    return bins, np.round(expected, 5).tolist(), np.round(actual, 5).tolist()


def compare(
    profile: dict[str, Any],
    current: pd.DataFrame,
    probabilities: np.ndarray | None = None,
    share_threshold: float = 0.5,
    tests: dict[str, str] | None = None,
    prediction_name: str = "score",
) -> DriftReport:
    """Drift of ``current`` (and its predicted probabilities) against ``profile``.

    Args:
        tests: optional column → statistic name; the default is chosen by column type and size.
        prediction_name: what the report calls the prediction (the use case's score field).
    """
    tests = tests or {}
    report = DriftReport(profile["rows"], len(current), share_threshold=share_threshold)
    for name, reference in profile["columns"].items():
        if name not in current.columns or reference.get("n", 0) == 0:
            continue
        values = (
            current[name].to_numpy()
            if reference["kind"] == "categorical"
            else pd.to_numeric(current[name], errors="coerce").to_numpy(dtype=float)
        )
        report.columns.append(_column(name, reference, values, tests.get(name)))
    if probabilities is not None and profile.get("prediction", {}).get("n"):
        report.prediction = _column(
            prediction_name,
            profile["prediction"],
            np.asarray(probabilities),
            tests.get(prediction_name),
        )
    return report


def psi_level(value: float | None) -> str:
    if value is None:
        return ""
    return "major" if value >= PSI_MAJOR else "minor" if value >= STATTESTS["psi"].threshold else "none"
