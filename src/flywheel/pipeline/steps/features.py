"""``features``: build the new snapshots and the labels in the offline store; nothing is served yet."""

from __future__ import annotations

from flywheel.features import ops, snapshots
from flywheel.pipeline.context import StepContext, StepSkipped


def run(ctx: StepContext, passed: str) -> dict[str, str]:
    if passed != "true":
        raise StepSkipped("validation failed")
    built, labels = ops.build(ctx.config, ctx.workdir)
    return {
        "snapshots": str(snapshots.table_dir(ctx.workdir)),
        "labels": str(labels.path),
        "dates_built": str(len(built.dates_built)),
    }
