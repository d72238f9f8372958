"""The wiring of the pipeline: which step feeds which input of which other step.

validate → features → data_load → train → eval → model_upload → promote → publish, as in seed 000
with the gate (seed 001) and publishing added: ``data_load`` also feeds ``eval``, ``model_upload`` and
``promote`` (the test split), ``train`` feeds ``model_upload``, ``eval`` feeds ``model_upload`` (the
metrics the gate decides on) and ``promote`` (the candidate's test probabilities). The whole training
path is conditional on ``validate.passed``; only ``publish`` changes what is served.

A use case with a templated extraction (seed 003) runs ``extract`` between ``features`` and
``data_load``: the extraction for the run's logical date selects the labels the dataset is built from
(:func:`pipeline_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from flywheel.pipeline.steps import (
    data_load,
    eval,
    extract,
    features,
    model_upload,
    promote,
    publish,
    train,
    validate,
)
from flywheel.usecases.spec import UseCase


@dataclass(frozen=True)
class Step:
    name: str
    module: ModuleType
    # input name → (upstream step, output name)
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def run(self) -> Callable[..., dict[str, str]]:
        return self.module.run

    @property
    def upstream(self) -> list[str]:
        return sorted({source for source, _ in self.inputs.values()})


PIPELINE: tuple[Step, ...] = (
    Step("validate", validate),
    Step("features", features, {"passed": ("validate", "passed")}),
    Step("data_load", data_load, {"labels": ("features", "labels")}),
    Step("train", train, {"dataset": ("data_load", "dataset")}),
    Step(
        "eval",
        eval,
        {
            "run_id": ("train", "run_id"),
            "model_uri": ("train", "model_uri"),
            "threshold": ("train", "threshold"),
            "test": ("data_load", "test"),
        },
    ),
    Step(
        "model_upload",
        model_upload,
        {
            "run_id": ("train", "run_id"),
            "model_uri": ("train", "model_uri"),
            "metrics": ("eval", "metrics"),
            "test": ("data_load", "test"),
        },
    ),
    Step(
        "promote",
        promote,
        {
            "version": ("model_upload", "version"),
            "gate_passed": ("model_upload", "gate_passed"),
            "predictions": ("eval", "predictions"),
            "test": ("data_load", "test"),
        },
    ),
    Step(
        "publish",
        publish,
        {
            "version": ("promote", "version"),
            "promote": ("promote", "promote"),
            "reason": ("promote", "reason"),
            "champion": ("promote", "champion"),
        },
    ),
)
STEPS = {step.name: step for step in PIPELINE}
EXTRACT = Step("extract", extract, {"labels": ("features", "labels")})


def pipeline_for(usecase: UseCase) -> tuple[Step, ...]:
    """The use case's pipeline: :data:`PIPELINE`, with ``extract`` feeding ``data_load`` its labels
    when the use case has a templated extraction."""
    if usecase.extraction is None:
        return PIPELINE
    steps: list[Step] = []
    for step in PIPELINE:
        if step.name == "data_load":
            steps.append(EXTRACT)
            step = Step(step.name, step.module, {"labels": ("extract", "labels")})
        steps.append(step)
    return tuple(steps)


def steps_for(usecase: UseCase) -> dict[str, Step]:
    return {step.name: step for step in pipeline_for(usecase)}


# Seed 000's parameter table → config keys; `--param name=value` overrides one per run.
PARAMETERS = {
    "label_column": None,  # derived from labels.horizon_days; shown, not settable
    "time_column": None,
    "train_ratio": "dataset.train_ratio",
    "valid_ratio": "dataset.valid_ratio",
    "horizon_days": "labels.horizon_days",
    "model_type": "training.model_type",
    "n_estimators": "training.params.n_estimators",
    "max_depth": "training.params.max_depth",
    "tuning": "training.tuning.method",
    "trials": "training.tuning.trials",
    "experiment_name": "tracking.experiment",
    "model_display_name": "registry.model_name",
}
