"""``eval``: the candidate's and the baseline's test-set probabilities, once, and their metrics at
the threshold ``train`` chose; logged to the training run."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipeline.context import StepContext
from flywheel.training import train


def run(ctx: StepContext, run_id: str, model_uri: str, threshold: str, test: str) -> dict[str, str]:
    result = train.evaluate(ctx.config, ctx.workdir, run_id, model_uri, float(threshold), Path(test))
    return {
        "metrics": result.metrics_uri,
        "predictions": result.predictions_uri,
        "roc_auc": f"{result.metrics['roc_auc']:.6f}",
        "baseline_roc_auc": f"{result.baseline_metrics['roc_auc']:.6f}",
    }
