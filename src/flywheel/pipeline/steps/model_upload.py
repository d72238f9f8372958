"""``model_upload``: register the candidate as a version, behind the quality gate on ``eval``'s metrics
(no alias moves: ``publish`` moves them)."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipeline.context import StepContext
from flywheel.registry import registry
from flywheel.training.train import read_evaluation


def run(ctx: StepContext, run_id: str, model_uri: str, metrics: str, test: str) -> dict[str, str]:
    measured = read_evaluation(metrics)["test"]
    registration = registry.register(
        ctx.config, ctx.workdir, run_id, model_uri, measured, Path(test), challenger=False
    )
    return {"version": registration.version, "gate_passed": str(registration.gate_passed).lower()}
