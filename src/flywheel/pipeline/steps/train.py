"""``train``: tune and fit the candidate and the baseline on the train/valid splits; log to MLflow."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipeline.context import StepContext
from flywheel.training import train


def run(ctx: StepContext, dataset: str) -> dict[str, str]:
    result = train.fit_run(ctx.config, ctx.workdir, Path(dataset), pipeline_run_id=ctx.pipeline_run_id)
    return {
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "threshold": repr(result.threshold),
        "valid_roc_auc": f"{result.valid_metrics['roc_auc']:.6f}",
    }
