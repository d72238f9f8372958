"""``model_upload``: register the candidate as a version of the model, behind the quality gate."""

from __future__ import annotations

from flywheel.pipeline.context import StepContext
from flywheel.registry import registry


def run(ctx: StepContext, run_id: str, model_uri: str, metrics: str) -> dict[str, str]:
    registration = registry.register(ctx.config, ctx.workdir, run_id, model_uri)
    return {"version": registration.version, "gate_passed": str(registration.gate_passed).lower()}
