"""``train``: tune and train the candidate and the baseline on the dataset; log to MLflow."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipeline.context import StepContext
from flywheel.training import train


def run(ctx: StepContext, dataset: str) -> dict[str, str]:
    result = train.train(ctx.config, ctx.workdir, Path(dataset), pipeline_run_id=ctx.pipeline_run_id)
    return {
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "test_roc_auc": f"{result.test_metrics['roc_auc']:.6f}",
        "baseline_test_roc_auc": f"{result.baseline_test_metrics['roc_auc']:.6f}",
    }
