"""``promote``: apply the promotion policy to the new version (a failed gate is a no-op)."""

from __future__ import annotations

from flywheel.pipeline.context import StepContext, StepSkipped
from flywheel.registry import registry


def run(ctx: StepContext, version: str, gate_passed: str) -> dict[str, str]:
    if gate_passed != "true":
        raise StepSkipped(f"version {version} failed the quality gate")
    decision = registry.promote(ctx.config, ctx.workdir, version, run_id=ctx.pipeline_run_id, automatic=True)
    return {
        "promoted": str(decision.promoted).lower(),
        "reason": decision.reason,
        "champion": decision.version if decision.promoted else (decision.previous or ""),
    }
