"""``eval``: the candidate's and the baseline's test-set probabilities, once, and their metrics at
the threshold ``train`` chose; logged to the training run."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipeline.context import StepContext
from flywheel.training import train


def run(ctx: StepContext, run_id: str, model_uri: str, threshold: str, test: str) -> dict[str, str]:
    result = train.evaluate(ctx.config, ctx.workdir, run_id, model_uri, float(threshold), Path(test))
    # the headline figures: ROC-AUC, and for a multiclass task macro-F1 and log loss too
    shown = ("roc_auc", "macro_f1", "log_loss") if ctx.config.spec.classes else ("roc_auc",)
    return {
        "metrics": result.metrics_uri,
        "predictions": result.predictions_uri,
        **{name: f"{result.metrics[name]:.6f}" for name in shown},
        **{f"baseline_{name}": f"{result.baseline_metrics[name]:.6f}" for name in shown},
    }
