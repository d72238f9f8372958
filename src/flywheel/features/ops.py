"""``flywheel features build``: snapshots and labels together, so they always describe the same lake."""

from __future__ import annotations

from collections.abc import Callable

from flywheel.config import FlywheelConfig
from flywheel.features import labels, snapshots
from flywheel.lock import locks_workdir
from flywheel.workdir import Workdir


@locks_workdir("features build")
def build(
    config: FlywheelConfig,
    workdir: Workdir,
    full: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[snapshots.BuildResult, labels.LabelResult]:
    """Build the missing feature snapshots (all with ``full``), then the labels."""
    built = snapshots.build(config, workdir, full=full, progress=progress)
    if progress:
        progress("labels")
    return built, labels.build(config, workdir)
