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
the mean probability of the predicted class. A binary period's accuracy and F1 are at the threshold of
the version that answered each row.

Every period, pending or not, also carries the figures estimated from its logged probabilities alone
(:mod:`flywheel.monitoring.estimation`), with the band the estimator's error on the answering
version's test split gives; where labels have landed, the estimator's own error and the metrics whose
realized value fell outside the band (``concept_shift``: the no-concept-drift assumption broke).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from flywheel.config import FlywheelConfig
from flywheel.data.engine import DuckEngine
from flywheel.data.lake import Lake
from flywheel.features import labels as labels_module
from flywheel.monitoring import estimates, estimation, logrows
from flywheel.rollout.state import CHAMPION
from flywheel.serving.predlog import SHADOW, read_log
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
    f1: float | None = None
    macro_f1: float | None = None
    log_loss: float | None = None
    estimated: dict[str, float] = field(default_factory=dict)
    band: dict[str, list[float]] = field(default_factory=dict)
    # with labels: the expected figures of the labelled rows alone, their band, realized − expected,
    # and the metrics whose realized figure left that band (a partial period's labelled rows are a
    # subset of its predictions)
    estimated_labelled: dict[str, float] = field(default_factory=dict)
    band_labelled: dict[str, list[float]] = field(default_factory=dict)
    estimation_error: dict[str, float] = field(default_factory=dict)
    concept_shift: list[str] = field(default_factory=list)


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
    # a rollout's arms: the logged rows per arm and version, and a shadow's labelled rows (it
    # answered no one, so it stays out of every figure above)
    arm_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    shadow: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    # the estimator: each answering version's reference, and every dated answer with its threshold
    versions: dict[str, estimates.VersionReference] = field(default_factory=dict)
    scored: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def recent_estimate(self, days: int, metric: str = "roc_auc") -> tuple[int, float | None]:
        """Predictions over the newest ``days`` of data time, labelled or not, and their estimated
        ``metric``."""
        if self.scored.empty:
            return 0, None
        frame = self.scored[self.scored["as_of"] > self.scored["as_of"].max() - pd.Timedelta(days=days)]
        frame = _with_probabilities(frame, self.classes)
        if frame.empty:
            return 0, None
        value = estimation.expected_metrics(
            _probabilities(frame, self.classes), frame["threshold"].to_numpy()
        ).get(metric)
        return len(frame), value

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

    def arms(self) -> list[dict[str, Any]]:
        """Per rollout arm and model version (rows logged without an arm are ``-``): predictions,
        labelled predictions and their figures."""
        labelled = pd.concat([self.labelled, self.shadow]) if not self.shadow.empty else self.labelled
        out = []
        for (arm, version), predictions in sorted(self.arm_counts.items()):
            rows = labelled[(labelled["arm"].fillna("-") == arm) & (labelled["model_version"] == version)]
            figures = _metrics(rows, self.classes) if len(rows) else {}
            out.append(
                {"arm": arm, "version": version, "predictions": predictions, "labelled": len(rows)} | figures
            )
        return out

    def shadow_comparisons(self, config: FlywheelConfig) -> list[dict[str, Any]]:
        """Each shadow challenger against the champion it shadowed, on the very requests both scored,
        once labelled: the registry's paired bootstrap of ``registry.compare_metric``, one per
        (shadow version, champion version)."""
        if self.shadow.empty:
            return []
        pairs = self.shadow.merge(
            self.labelled[self.labelled["arm"] == CHAMPION], on="request_id", suffixes=("", "_champion")
        )
        if self.classes:  # rows logged without their class probabilities cannot be compared
            pairs = pairs[pairs["probabilities"].notna() & pairs["probabilities_champion"].notna()]
        metric = config.registry.compare_metric
        out = []
        for (shadow, champion), group in pairs.groupby(["model_version", "model_version_champion"]):
            found = {"metric": metric, "pairs": len(group), "shadow": str(shadow), "champion": str(champion)}
            try:
                found |= evaluation.bootstrap_difference(
                    group["label"].to_numpy(dtype=int),
                    _probabilities(group, self.classes),
                    _probabilities(
                        group.assign(
                            score=group["score_champion"], probabilities=group["probabilities_champion"]
                        ),
                        self.classes,
                    ),
                    config.registry.bootstrap_samples,
                    config.registry.confidence,
                    seed=config.training.seed,
                    metric=metric,
                )
            except ValueError as error:  # e.g. one class among the labels so far
                found["error"] = str(error)
            out.append(found)
        return out

    def to_dict(self) -> dict[str, Any]:
        hidden = ("labelled", "periods", "classes", "arm_counts", "shadow", "versions", "scored")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}
        return {
            **out,
            "periods": [asdict(p) for p in self.periods],
            "estimator": {
                "assumption": estimates.ASSUMPTION,
                "versions": {v: reference.to_dict() for v, reference in self.versions.items()},
            },
            "calibration": self.calibration(),
            "arms": self.arms(),
        }


def read_predictions(
    path: Path, not_after: datetime, entity_dtype: str = "int64", shadow: bool = False
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The logged predictions (with ``shadow``, a shadow challenger's too), bad rows left out, and
    how many were skipped per bad column."""
    rows = read_log(path, columns=logrows.PREDICTION_COLUMNS, shadow=shadow)
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


def _with_probabilities(frame: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """The rows the estimator can read: every row (binary), those with class probabilities (multiclass)."""
    return frame[frame["probabilities"].notna()] if classes else frame


def _probabilities(frame: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:
    """The scores as the evaluation takes them: the probability, or one column per class."""
    if not classes:
        return frame["score"].to_numpy(dtype=float)
    return np.array(frame["probabilities"].map(json.loads).tolist(), dtype=float).reshape(len(frame), -1)


def _multiclass_metrics(frame: pd.DataFrame, classes: tuple[str, ...]) -> dict[str, float | None]:
    """The multiclass figures of labelled predictions whose probabilities were logged (a row logged
    without them, e.g. by a binary model of an earlier task definition, is left out)."""
    frame = frame[frame["probabilities"].notna()]
    if frame.empty:
        return {}
    y = frame["label"].to_numpy(dtype=int)
    p = _probabilities(frame, classes)
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
    everything, skipped = read_predictions(
        workdir.predictions, not_after, config.spec.entity.dtype, shadow=True
    )
    arm_counts = everything.groupby([everything["arm"].fillna("-"), "model_version"]).size()
    log = everything[everything["arm"] != SHADOW]  # a shadow answered no one: in no figure but its own
    key = config.spec.entity.join_key
    dated = everything.dropna(subset=["as_of", "entity_id"]).copy()
    lake = Lake(workdir, config.spec)
    _, last = labels_module.observed_range(config.spec, lake.engine(DuckEngine()))
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
    shadowed = labelled["arm"] == SHADOW
    labelled, shadow = labelled[~shadowed], labelled[shadowed]
    dated = dated[dated["arm"] != SHADOW]
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
        arm_counts={(str(arm), str(version)): int(n) for (arm, version), n in arm_counts.items()},
        shadow=shadow,
        versions=estimates.references(config, workdir, sorted(dated["model_version"].dropna().unique())),
    )
    thresholds = {v: r.threshold for v, r in report.versions.items()}
    report.scored = dated.assign(threshold=dated["model_version"].map(thresholds).fillna(0.5))
    labelled = labelled.assign(threshold=labelled["model_version"].map(thresholds).fillna(0.5))
    report.labelled = labelled
    for start, rows in dated.groupby("period", sort=True):
        observable = int(rows["observable"].sum())
        status = "pending" if observable == 0 else "observed" if observable == len(rows) else "partial"
        period_rows = labelled[labelled["period"] == start]
        found = Period(
            start=f"{start:%Y-%m-%d}",
            end=f"{start + period:%Y-%m-%d}",
            predictions=len(rows),
            observable=observable,
            labelled=len(period_rows),
            status=status,
            **(_metrics(period_rows, config.spec.classes) if len(period_rows) else {}),
        )
        _estimate(
            found, report.scored.loc[rows.index], period_rows, report, config.monitoring.estimation_sigmas
        )
        report.periods.append(found)
    return report


def _estimate(
    period: Period, rows: pd.DataFrame, labelled: pd.DataFrame, report: PerformanceReport, sigmas: float
) -> None:
    """A period's estimated figures and band; with labels, the realized figures at the threshold, the
    estimator's error on the labelled rows and the metrics whose realized value left its band."""
    classes = report.classes
    rows = _with_probabilities(rows, classes)
    if rows.empty:
        return
    period.estimated = estimation.expected_metrics(
        _probabilities(rows, classes), rows["threshold"].to_numpy()
    )
    dominant = report.versions.get(str(rows["model_version"].mode().iloc[0]))
    reference = dominant.reference if dominant else None
    for metric, value in period.estimated.items():
        band = reference.band(metric, value, len(rows), sigmas) if reference else None
        if band:
            period.band[metric] = list(band)
    labelled = _with_probabilities(labelled, classes)
    if labelled.empty:
        return
    p, thresholds = _probabilities(labelled, classes), labelled["threshold"].to_numpy()
    realized = estimation.realized_metrics(labelled["label"].to_numpy(dtype=int), p, thresholds)
    if not classes:  # a binary period's decisions, at each answering version's threshold
        period.accuracy, period.f1 = realized["accuracy"], realized["f1"]
    period.estimated_labelled = estimation.expected_metrics(p, thresholds)
    for metric, value in realized.items():
        expected = period.estimated_labelled.get(metric)
        if expected is None:
            continue
        period.estimation_error[metric] = value - expected
        band = reference.band(metric, expected, len(labelled), sigmas) if reference else None
        if band:
            period.band_labelled[metric] = list(band)
            if not band[0] <= value <= band[1]:
                period.concept_shift.append(metric)


def write(report: PerformanceReport, workdir: Workdir) -> Path:
    workdir.reports.mkdir(parents=True, exist_ok=True)
    path = workdir.reports / f"performance-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2))
    return path
