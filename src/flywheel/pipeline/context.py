"""What every step receives: the config, the workdir, the pipeline run it belongs to and the logical
date it runs for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from flywheel.config import FlywheelConfig
from flywheel.workdir import Workdir


@dataclass(frozen=True)
class StepContext:
    """The run a step belongs to.

    Attributes:
        config: The effective config of the run.
        workdir: The workdir the steps share.
        pipeline_run_id: The in-process runner's pipeline run, if any (an orchestrator's task has none).
        logical_date: The date the run is for — Airflow's ``{{ ds }}`` — when the orchestrator gives one;
            a step that extracts data by date reads it from here, never from the wall clock.
    """

    config: FlywheelConfig
    workdir: Workdir
    pipeline_run_id: str | None = None
    logical_date: date | None = None


class StepSkipped(Exception):
    """Raised by a step whose condition does not hold; the runner marks it SKIPPED, not FAILED."""
