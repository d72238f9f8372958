"""Rows of the prediction log as monitoring reads them: a bad row is counted and skipped with a
warning, never a stop of monitoring or of the retraining loop.

The service bounds every value before it logs it, but the log outlives any one version of those
bounds (rows written before them, by another writer, or by hand), and one unreadable row must not
switch off performance monitoring, drift from the log or the loop's retrain stage.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

_logger = logging.getLogger(__name__)
PREDICTION_COLUMNS = ("entity_id", "as_of", "score", "model_version", "probabilities", "request_id", "arm")
_EXAMPLES = 3


def _is_probability(value: Any) -> bool:
    # NaN fails both comparisons and ±inf fails one, so this also refuses non-finite values
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _is_entity_id(value: Any, dtype: str) -> bool:
    """A missing id is allowed (``/v1/score`` without one); anything else must be a key of the
    entity's type: an integer, or a non-empty string."""
    if value is None:
        return True
    if dtype == "string":
        return isinstance(value, str) and bool(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _is_feature_value(value: Any) -> bool:
    """A JSON scalar the drift statistics can take: a number that fits a float and is not infinite
    (NaN is a missing value, as in the snapshots), a string or null."""
    if value is None or isinstance(value, str | bool):
        return True
    # compared, not converted: float(10**400) would raise, and NaN > max is False
    return isinstance(value, int | float) and not abs(value) > sys.float_info.max


def _warn(skipped: Counter, examples: list[str]) -> None:
    if skipped:
        reasons = ", ".join(f"{n} with a bad {reason}" for reason, n in sorted(skipped.items()))
        _logger.warning(
            "prediction log: skipped %d bad row(s) (%s); e.g. %s",
            sum(skipped.values()),
            reasons,
            "; ".join(examples),
        )


def predictions(
    rows: list[dict[str, Any]], not_after: datetime, entity_dtype: str = "int64"
) -> tuple[pd.DataFrame, Counter]:
    """``rows`` of :data:`PREDICTION_COLUMNS` as a frame with ``as_of`` parsed to UTC (NaT when the
    row has none), without the bad rows; and the count of skipped rows per bad column.

    Bad: an ``as_of`` that does not parse, lies outside pandas' range or after ``not_after``; a
    ``entity_id`` that is not an id; a ``score`` (probability) that is not a number in [0, 1].
    """
    # object columns: a None among integer ids would make the column float and every id a non-integer
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS), dtype=object)
    as_of = pd.to_datetime(frame["as_of"], utc=True, format="ISO8601", errors="coerce")
    checks = {
        "as_of": frame["as_of"].isna() | (as_of.notna() & (as_of <= pd.Timestamp(not_after))),
        "entity_id": frame["entity_id"].map(lambda v: _is_entity_id(v, entity_dtype)).astype(bool),
        "score": frame["score"].map(_is_probability).astype(bool),
    }
    good = np.ones(len(frame), dtype=bool)
    skipped: Counter = Counter()
    examples: list[str] = []
    for column, ok in checks.items():
        bad = good & ~ok.to_numpy()
        if bad.any():
            skipped[column] = int(bad.sum())
            examples += [f"{column}={v!r}" for v in frame.loc[bad, column].head(_EXAMPLES)]
        good &= ~bad
    _warn(skipped, examples[:_EXAMPLES])
    frame = frame.assign(as_of=as_of)[good].reset_index(drop=True)
    frame["score"] = frame["score"].astype(float)
    return frame, skipped


def features(rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, Counter]:
    """Rows with ``features`` (a JSON object) and ``score`` as one frame of the features plus
    ``score`` and ``predicted_class``, without the bad rows; and the count of skipped rows per bad
    column."""
    kept: list[dict[str, Any]] = []
    probabilities: list[float] = []
    classes: list[str | None] = []  # a multiclass prediction's class (None for a binary one)
    skipped: Counter = Counter()
    examples: list[str] = []
    for row in rows:
        try:
            values = json.loads(row["features"])
        except (json.JSONDecodeError, TypeError):  # not JSON, or not text at all
            values = None
        if not isinstance(values, dict) or not all(map(_is_feature_value, values.values())):
            skipped["features"] += 1
            examples.append(f"features={str(row['features'])[:80]!r}")
        elif not _is_probability(row["score"]):
            skipped["score"] += 1
            examples.append(f"score={row['score']!r}")
        else:
            kept.append(values)
            probabilities.append(float(row["score"]))
            classes.append(row.get("predicted_class"))
    _warn(skipped, examples[:_EXAMPLES])
    frame = pd.DataFrame(kept)
    frame["score"] = probabilities
    frame["predicted_class"] = pd.Series(classes, dtype=object)
    return frame, skipped
