"""``data_load``: the point-in-time training set from the labels ``features`` built, split by time."""

from __future__ import annotations

from pathlib import Path

from flywheel.features import dataset
from flywheel.pipeline.context import StepContext


def run(ctx: StepContext, labels: str) -> dict[str, str]:
    result = dataset.build(ctx.config, ctx.workdir, labels_path=Path(labels))
    return {
        "dataset": str(result.path),
        "dataset_id": result.dataset_id,
        "test": str(result.path / "test.parquet"),
    }
