"""Performance with delayed labels: logged predictions joined with the labels that newer lake data
has made observable.

A prediction made on features as of data time ``t`` (the log's ``as_of``) about an entity is labelled
by the same rule as training labels (the use case's label SQL), for entities in the label population
at ``t``. The label is observable once the lake has observed ``t + horizon`` (the use case's
``observed_sql``); until then the prediction is *pending* — never counted as a zero. Periods are
``monitoring.period_days`` of data time on the snapshot grid. A bad log row (see
:mod:`flywheel.monitoring.logrows`) is counted in ``skipped_rows`` and left out.

A multiclass use case's periods add accuracy, macro-F1 and log loss from the logged probabilities
of every class; ROC-AUC and PR-AUC are then one-vs-rest, macro-averaged, and ``mean_probability`` is
the mean probability of the predicted class.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from flywheel.config import FlywheelConfig
from flywheel.data.lake import Lake
from flywheel.features import labels as labels_module
from flywheel.monitoring import logrows
from flywheel.serving.predlog import read_log
from flywheel.training import evaluation
from flywheel.workdir import Workdir


@dataclass
class Period:
    start: str
    end: str
    predictions: int
    observable: int
    labelled: int
    status: str  # observed | partial | pending
    roc_auc: float | None = None
    pr_auc: float | None = None
    brier: float | None = None
    mean_probability: float | None = None
    observed_rate: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    log_loss: float | None = None


@dataclass
class PerformanceReport:
    horizon_days: int
    observed_until: str
    predictions: int
    without_as_of: int
    outside_population: int
    skipped_rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # bad column → rows skipped for it
    periods: list[Period] = field(default_factory=list)
    labelled: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    classes: tuple[str, ...] = ()

    def recent(self, days: int, metric: str = "roc_auc") -> tuple[int, float | None]:
        """Labelled predictions over the newest ``days`` of labelled data time, and their ``metric``."""
        if self.labelled.empty:
            return 0, None
        frame = self.labelled[self.labelled["as_of"] > self.labelled["as_of"].max() - pd.Timedelta(days=days)]
        return len(frame), _metrics(frame, self.classes).get(metric)

    def calibration(self, bins: int = 10) -> list[dict[str, Any]]:
        """Reliability table over every labelled prediction: per probability bin, the mean predicted
        probability beside the observed rate of positives."""
        if self.labelled.empty or self.classes:  # multiclass: the eval step's per-class curves
            return []
        p = self.labelled["score"].to_numpy()
        which = np.minimum((p * bins).astype(int), bins - 1)
        table = []
        for b in range(bins):
            inside = which == b
            if inside.any():
                table.append(
                    {
                        "bin": f"{b / bins:.1f}–{(b + 1) / bins:.1f}",
                        "predictions": int(inside.sum()),
                        "mean_probability": float(p[inside].mean()),
                        "observed_rate": float(self.labelled["label"].to_numpy()[inside].mean()),
                    }
                )
        return table

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("labelled", "periods", "classes")}
        return {**out, "periods": [asdict(p) for p in self.periods], "calibration": self.calibration()}


def read_predictions(
    path: Path, not_after: datetime, entity_dtype: str = "int64"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The logged predictions, bad rows left out, and how many were skipped per bad column."""
    rows = read_log(path, columns=logrows.PREDICTION_COLUMNS)
    frame, skipped = logrows.predictions(rows, not_after, entity_dtype)
    return frame, dict(skipped)


def _metrics(frame: pd.DataFrame, classes: tuple[str, ...] = ()) -> dict[str, float | None]:
    if classes:
        return _multiclass_metrics(frame, classes)
    y, p = frame["label"].to_numpy(), frame["score"].to_numpy()
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else None,
        "mean_probability": float(p.mean()) if len(y) else None,
        "observed_rate": float(y.mean()) if len(y) else None,
    }


def _multiclass_metrics(frame: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, float | None]:
    """The multiclass figures of labelled predictions whose probabilities were logged (a row logged
    without them, e.g. by a binary model of an earlier task definition, is left out)."""
    frame = frame[frame["probabilities"].notna()]
    if frame.empty:
        return {}
    y = frame["label"].to_numpy(dtype=int)
    p = np.array(frame["probabilities"].map(json.loads).tolist(), dtype=float).reshape(len(frame), -1)
    values = evaluation.multiclass_metrics(y, p, classes)
    several = len(np.unique(y)) > 1  # one-vs-rest AUCs need two classes among the labels
    return {
        "roc_auc": values["roc_auc"] if several else None,
        "pr_auc": values["pr_auc"] if several else None,
        "brier": values["brier"],
        "mean_probability": float(p.max(axis=1).mean()),
        "accuracy": values["accuracy"],
        "macro_f1": values["macro_f1"],
        "log_loss": values["log_loss"],
    }


def evaluate(config: FlywheelConfig, workdir: Workdir, period_days: int | None = None) -> PerformanceReport:
    """Per-period performance of the logged predictions whose labels the lake now observes: labels on
    the grid are matched by entity and data time, event labels (one per entity, e.g. a contact) by
    entity alone."""
    period = timedelta(days=period_days or config.monitoring.period_days)
    horizon = timedelta(days=config.labels.horizon_days)
    not_after = config.monitoring.latest_data_time()
    log, skipped = read_predictions(workdir.predictions, not_after, config.spec.entity.dtype)
    key = config.spec.entity.join_key
    dated = log.dropna(subset=["as_of", "entity_id"]).copy()
    lake = Lake(workdir, config.spec)
    _, last = labels_module.observed_range(config.spec, lake.connect(config.features.memory_limit))
    last = pd.Timestamp(last)
    last = last.tz_convert(UTC) if last.tzinfo else last.tz_localize(UTC)
    dated["observable"] = dated["as_of"] + horizon <= last
    observable_dates = sorted(dated.loc[dated["observable"], "as_of"].unique())
    labelled = dated.iloc[0:0].assign(label=pd.Series(dtype="int64"))
    if observable_dates and config.labels.cadence_days is None:  # one label per entity (a contact)
        columns = {key: "entity_id", config.labels.label_column: "label"}
        truth = (
            labels_module.current(config, workdir).select(list(columns)).to_pandas().rename(columns=columns)
        )
        dated["entity_id"] = dated["entity_id"].astype(truth["entity_id"].dtype)
        labelled = dated[dated["observable"]].merge(truth, on="entity_id", how="inner")
    elif observable_dates:
        truth = labels_module.at_dates(
            config, workdir, [pd.Timestamp(d).to_pydatetime() for d in observable_dates]
        ).to_pandas()
        truth = truth.rename(
            columns={
                labels_module.TIMESTAMP_COLUMN: "as_of",
                config.labels.label_column: "label",
                key: "entity_id",
            }
        )[["entity_id", "as_of", "label"]]
        truth["as_of"] = pd.to_datetime(truth["as_of"], utc=True)
        dated["entity_id"] = dated["entity_id"].astype(truth["entity_id"].dtype)
        labelled = dated[dated["observable"]].merge(truth, on=["entity_id", "as_of"], how="inner")
    anchor = pd.Timestamp(config.features.anchor, tz=UTC)
    dated["period"] = anchor + ((dated["as_of"] - anchor) // period) * period
    labelled = labelled.assign(period=anchor + ((labelled["as_of"] - anchor) // period) * period)
    report = PerformanceReport(
        horizon_days=horizon.days,
        observed_until=last.isoformat(),
        predictions=len(log),
        without_as_of=len(log) - len(dated),
        outside_population=int(dated["observable"].sum()) - len(labelled),
        skipped_rows=sum(skipped.values()),
        skipped=skipped,
        labelled=labelled,
        classes=config.spec.classes,
    )
    for start, rows in dated.groupby("period", sort=True):
        observable = int(rows["observable"].sum())
        status = "pending" if observable == 0 else "observed" if observable == len(rows) else "partial"
        period_rows = labelled[labelled["period"] == start]
        report.periods.append(
            Period(
                start=f"{start:%Y-%m-%d}",
                end=f"{start + period:%Y-%m-%d}",
                predictions=len(rows),
                observable=observable,
                labelled=len(period_rows),
                status=status,
                **(_metrics(period_rows, config.spec.classes) if len(period_rows) else {}),
            )
        )
    return report


def write(report: PerformanceReport, workdir: Workdir) -> Path:
    workdir.reports.mkdir(parents=True, exist_ok=True)
    path = workdir.reports / f"performance-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2))
    return path
