"""The one-command demo: the whole loop, as far as it is built, on generated data.

Idempotent: a second run finds its batches already in the lake and only re-checks and summarizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
DEMO_BATCH_ID = "demo-batch-1"


@dataclass
class DemoSummary:
    steps: list[tuple[str, str]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)


def run(
    config: FlywheelConfig, workdir: Workdir, on_step: Callable[[str], None] | None = None
) -> DemoSummary:
    """generate → validate → simulate a new batch → summary."""
    summary = DemoSummary()

    def step(name: str, detail: str) -> None:
        summary.steps.append((name, detail))
        if on_step:
            on_step(f"{name}: {detail}")

    generated = ops.generate(config, workdir)
    step(
        "generate",
        f"{generated.batch_id} {_rows(generated)}" + ("" if generated.created else " (already there)"),
    )
    report = ops.validate(workdir)
    step("validate", report.summary())
    simulated = ops.simulate(config, workdir, batch_id=DEMO_BATCH_ID)
    drift = simulated.record["generator"]["drift"]
    step(
        "simulate",
        f"{simulated.batch_id} drift={drift} {_rows(simulated)}"
        + ("" if simulated.created else " (already there)"),
    )
    summary.batches = ops.status(workdir)
    return summary


def _rows(result: ops.CommitResult) -> str:
    return ", ".join(
        f"{name}={rows:,}" for name, rows in result.rows.items() if name in {"users", "orders", "order_items"}
    )
