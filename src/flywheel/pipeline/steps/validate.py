"""``validate``: the lake is what was committed (each batch was validated at commit, so only the
files are checked, never re-read); its ``passed`` output gates training (seed 001's condition)."""

from __future__ import annotations

from flywheel.data import ops
from flywheel.pipeline.context import StepContext


def run(ctx: StepContext) -> dict[str, str]:
    report = ops.verify(ctx.config.spec, ctx.workdir)
    if not report.ok:
        report.write(ctx.workdir.reports)
    return {"passed": str(report.ok).lower(), "summary": report.summary()}
