"""``data_load``: the point-in-time training set and its time split."""

from __future__ import annotations

from flywheel.features import dataset
from flywheel.pipeline.context import StepContext


def run(ctx: StepContext, labels: str) -> dict[str, str]:
    result = dataset.build(ctx.config, ctx.workdir)
    return {
        "dataset": str(result.path),
        "dataset_id": result.dataset_id,
        "test": str(result.path / "test.parquet"),
    }
