"""``eval``: score the trained model on the test split that ``data_load`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

from flywheel.pipeline.context import StepContext
from flywheel.training import train


def run(ctx: StepContext, model_uri: str, test: str) -> dict[str, str]:
    metrics = train.evaluate_model(ctx.config, ctx.workdir, model_uri, dataset_path=Path(test).parent)
    path = Path(test).parent / f"eval-{model_uri.rsplit('/', 1)[-1]}.json"
    path.write_text(json.dumps(metrics, indent=2))
    return {"metrics": str(path), "roc_auc": f"{metrics['roc_auc']:.6f}"}
