"""``features``: build new snapshots and labels, apply the Feast repo, materialize what is new."""

from __future__ import annotations

from flywheel.features import online, ops, snapshots
from flywheel.features.labels import labels_path
from flywheel.pipeline.context import StepContext, StepSkipped


def run(ctx: StepContext, passed: str) -> dict[str, str]:
    if passed != "true":
        raise StepSkipped("validation failed")
    built, _ = ops.build(ctx.config, ctx.workdir)
    online.apply(ctx.config, ctx.workdir)
    materialized = online.materialize(ctx.config, ctx.workdir, incremental=True)
    return {
        "snapshots": str(snapshots.table_dir(ctx.workdir)),
        "labels": str(labels_path(ctx.workdir)),
        "dates_built": str(len(built.dates_built)),
        "materialized": str(materialized.written),
    }
