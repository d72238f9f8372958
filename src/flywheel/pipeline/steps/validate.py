"""``validate``: re-check the whole lake; its ``passed`` output gates training (seed 001's condition)."""

from __future__ import annotations

from flywheel.data import ops
from flywheel.pipeline.context import StepContext


def run(ctx: StepContext) -> dict[str, str]:
    report = ops.validate(ctx.workdir)
    return {"passed": str(report.ok).lower(), "summary": report.summary()}
