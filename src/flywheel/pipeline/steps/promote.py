"""``promote``: the promotion policy on the new version — compared with the champion on the same
test rows, reusing ``eval``'s probabilities. It decides; ``publish`` acts (a failed gate skips both)."""

from __future__ import annotations

from pathlib import Path

from flywheel.pipeline.context import StepContext, StepSkipped
from flywheel.registry import registry
from flywheel.training.train import read_predictions


def run(ctx: StepContext, version: str, gate_passed: str, predictions: str, test: str) -> dict[str, str]:
    if gate_passed != "true":
        raise StepSkipped(f"version {version} failed the quality gate")
    decision = registry.decide(
        ctx.config,
        ctx.workdir,
        version,
        automatic=True,
        candidate=read_predictions(predictions),
        test=Path(test),
    )
    return {
        "version": version,
        "promote": str(decision.promoted).lower(),
        "reason": decision.reason,
        "champion": decision.previous or "",
    }
