"""What the performance estimator needs from the registry, and what it says when its assumption
breaks: each answering version's threshold, calibration and reference (the estimator's error on the
version's labelled test split), and the alert of a concept shift.

The math is :mod:`flywheel.monitoring.estimation`; the periods are
:mod:`flywheel.monitoring.performance`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flywheel.config import FlywheelConfig
from flywheel.errors import DataError
from flywheel.monitoring import estimation
from flywheel.training import evaluation
from flywheel.workdir import Workdir

if TYPE_CHECKING:
    from flywheel.monitoring.performance import Period

_logger = logging.getLogger(__name__)
ASSUMPTION = (
    "estimates assume no concept drift (P(y | x) as the model learned it) and calibrated probabilities; "
    "a realized figure outside its band says the assumption broke"
)


@dataclass
class VersionReference:
    """What the estimator knows of a model version: its decision threshold, whether its probabilities
    were calibrated, and its error on the version's labelled test split (None when unreadable)."""

    threshold: float = 0.5
    calibrated: bool = False
    reference: estimation.Reference | None = None

    def to_dict(self) -> dict[str, Any]:
        reference = self.reference.to_dict() if self.reference else None
        return {"threshold": self.threshold, "calibrated": self.calibrated, "reference": reference}


def references(
    config: FlywheelConfig, workdir: Workdir, versions: Sequence[str]
) -> dict[str, VersionReference]:
    """Each version's threshold and calibration (its training run's parameters) and the estimator's
    error on its test split (the ``eval`` step's logged probabilities and labels). What cannot be read
    — the tracking store, a run, its test predictions — is logged and left at its default: the
    estimates then go without a band, never without a report."""
    from mlflow.exceptions import MlflowException

    from flywheel.registry.registry import mlflow_client, version_run

    if not versions:
        return {}
    out = {str(v): VersionReference() for v in versions}
    try:
        client = mlflow_client(config, workdir)
    except MlflowException as error:
        _logger.warning("the tracking store cannot be read (%s): estimates at threshold 0.5, no band", error)
        return out
    for version in out:
        try:
            run = version_run(client, config.registry.model_name, version)
        except MlflowException as error:
            _logger.info("version %s's run cannot be read (%s): estimates without a band", version, error)
            continue
        params = run.data.params
        found = out[version] = VersionReference(
            float(params.get("threshold", 0.5)), params.get("calibration", "none") != "none"
        )
        try:
            found.reference = _reference(run.info.run_id, found.threshold, config.training.seed)
        except (MlflowException, DataError, ValueError, KeyError) as error:  # ValueError: < 20 rows
            _logger.info(
                "version %s has no usable test predictions (%s): estimates without a band", version, error
            )
    return out


def _reference(run_id: str, threshold: float, seed: int) -> estimation.Reference:
    from flywheel.training.train import EVAL_FOLDER, PREDICTIONS_FILE, read_predictions

    test = read_predictions(f"runs:/{run_id}/{EVAL_FOLDER}/{PREDICTIONS_FILE}")
    return estimation.Reference.fit(
        test["label"].to_numpy(dtype=int),
        evaluation.read_probabilities(test, "probability"),
        threshold,
        seed=seed,
    )


def alert_concept_shift(config: FlywheelConfig, workdir: Workdir, periods: Sequence[Period]) -> int:
    """Alert each period whose realized figures left the band their estimate on the same labelled
    rows gave, once per period, period length and metrics; returns how many alerts were raised."""
    from flywheel.monitoring.alerts import alert, raised_keys

    said = raised_keys(workdir, "concept_shift")
    count = 0
    for period in periods:
        if not period.concept_shift:
            continue
        key = f"{period.start}/{period.end}:{','.join(sorted(period.concept_shift))}"
        if key in said:
            continue
        figures = ", ".join(_shifted(period, metric) for metric in period.concept_shift)
        alert(
            config,
            workdir,
            "concept_shift",
            f"concept shift suspected in the period from {period.start}: {figures}; "
            "P(y | x) may have changed, so estimates of later periods may be off",
            key=key,
            period=period.start,
            metrics=period.concept_shift,
        )
        said.add(key)
        count += 1
    return count


def _shifted(period: Period, metric: str) -> str:
    expected = period.estimated_labelled[metric]
    low, high = period.band_labelled[metric]
    return (
        f"{metric} realized {expected + period.estimation_error[metric]:.3f}, expected {expected:.3f} "
        f"on the {period.labelled:,} labelled predictions (band {low:.3f}–{high:.3f})"
    )
