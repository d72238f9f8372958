"""``publish``: the last act of a successful run — the online store takes the new snapshots (and the
repo's definitions, when they changed), then the ``champion`` alias moves if ``promote`` said so.
Nothing before this step changes what the service serves."""

from __future__ import annotations

from flywheel.features import online
from flywheel.pipeline.context import StepContext
from flywheel.registry import registry


def run(ctx: StepContext, version: str, promote: str, reason: str, champion: str) -> dict[str, str]:
    applied, materialized = online.publish(ctx.config, ctx.workdir)
    if promote == "true":
        client = registry.mlflow_client(ctx.config, ctx.workdir)
        registry.move_alias(
            client, ctx.config.registry.model_name, registry.CHAMPION, version, reason, ctx.pipeline_run_id
        )
        champion = version
    return {
        "promoted": promote,
        "reason": reason,
        "champion": champion,
        "applied": ", ".join(applied),
        "materialized": str(materialized.written),
        "through": materialized.through or "",
    }
