"""What every step receives: the config, the workdir and the pipeline run it belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.config import FlywheelConfig
from flywheel.workdir import Workdir


@dataclass(frozen=True)
class StepContext:
    config: FlywheelConfig
    workdir: Workdir
    pipeline_run_id: str | None = None


class StepSkipped(Exception):
    """Raised by a step whose condition does not hold; the runner marks it SKIPPED, not FAILED."""
