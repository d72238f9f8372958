"""``flywheel loop``: the continuous-training loop, one tick at a time.

A tick: take new batches (folders in ``<workdir>/inbox``, or one simulated batch), build the new
snapshots and the labels once, then monitor, decide and — when a trigger fires — run the pipeline
(``flywheel retrain``), whose last step publishes (materializes the online store, moves the champion
alias when the challenger won, or starts the loop's rollout of it through ``rollout.stages``, which
later ticks move on and promote). Without a successful run, the tick publishes the new snapshots for
the serving champion itself. A running service picks up a new champion through its alias poller and
new online rows on its next read. Each stage only publishes when it succeeds (atomic lake commits
and snapshot files, a guarded materialization, publishing as the pipeline's last step), so a failure
at any stage leaves the champion and the online store as they were; it is alerted, and the next
tick retries.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.errors import DataError
from flywheel.features import online
from flywheel.features import ops as feature_ops
from flywheel.lock import WorkdirBusy, locks_workdir
from flywheel.monitoring.alerts import alert
from flywheel.registry import registry
from flywheel.retraining import retrain
from flywheel.rollout import state as rollout_state
from flywheel.rollout.arms import ArmCounter
from flywheel.rollout.state import CHALLENGER
from flywheel.serving.predlog import SHADOW
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


@dataclass
class Tick:
    started: str
    stages: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage → wall-clock seconds
    decision: retrain.Decision | None = None
    failed_stage: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _ingest_inbox(config: FlywheelConfig, workdir: Workdir) -> list[str]:
    """Ingest each batch folder in the inbox; move it to ``.done`` or, rejected, to ``.rejected``."""
    taken = []
    if not workdir.inbox.exists():
        return taken
    for folder in sorted(p for p in workdir.inbox.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            result = ops.ingest(
                config.spec,
                workdir,
                [folder],
                batch_id=folder.name,
                settings=config.data.ingest,
                lake=config.lake,
            )
        except DataError:  # unreadable or rejected: the lake is unchanged; set the folder aside
            _move(folder, workdir.inbox / ".rejected")
            raise
        _move(folder, workdir.inbox / ".done")
        taken.append(result.batch_id)
    return taken


def _move(folder: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    target = to / folder.name
    if target.exists():
        shutil.rmtree(target)
    folder.rename(target)


@locks_workdir("loop")
def tick(
    config: FlywheelConfig,
    workdir: Workdir,
    simulate: bool = False,
    on_stage: Callable[[str, str], None] | None = None,
    on_event: Callable[[str, str], None] | None = None,
    batch_id: str | None = None,
) -> Tick:
    """One pass of the loop; never raises for a stage failure (it is returned, alerted and logged).
    ``on_stage`` hears each finished stage, ``on_event`` each pipeline step's status; ``batch_id``
    names the simulated batch (a batch already in the lake is not simulated again)."""
    result = Tick(started=datetime.now(UTC).isoformat())
    clock = [time.perf_counter()]

    def done(stage: str, detail: str) -> None:
        now = time.perf_counter()
        result.stages.append((stage, detail))
        result.seconds[stage] = now - clock[0]
        clock[0] = now
        if on_stage:
            on_stage(stage, detail)

    stage = "ingest"
    try:
        if simulate:
            batch = ops.simulate(config, workdir, batch_id=batch_id)
            again = "" if batch.created else " (already in the lake)"
            done(stage, f"simulated {batch.batch_id} (drift={config.data.simulate.drift}){again}")
        else:
            taken = _ingest_inbox(config, workdir)
            done(stage, f"ingested {', '.join(taken)}" if taken else f"no new batch in {workdir.inbox}")
        stage = "features"
        built, labels = feature_ops.build(config, workdir)
        done(stage, f"{len(built.dates_built)} snapshot dates built; {labels.rows:,} labels")
        stage = "rollout"  # first: a retrain must not supersede a rollout whose stage is done
        moved, rolling = _advance_rollout(config, workdir)
        if moved:
            done(stage, moved)
        stage = "retrain"
        if rolling is not None:  # the loop's own rollout decides first; the triggers wait for it
            done(stage, f"waits for {rolling}")
        else:
            result.decision = retrain.retrain(config, workdir, on_event=on_event)
            done(stage, f"{result.decision.outcome}: {'; '.join(result.decision.reasons)}")
            if result.decision.error:
                result.failed_stage, result.error = stage, result.decision.error
        stage = "publish"
        if result.decision is not None and result.decision.published:
            done(stage, "published by the retrain's pipeline run")
        else:  # the serving champion gets the new snapshots whatever the retrain did
            _, materialized = online.publish(config, workdir)
            done(stage, f"{materialized.written:,} entities materialized, through {materialized.through}")
    except Exception as error:  # any stage: report, keep what is published, retry next tick
        failure = f"{type(error).__name__}: {error}"
        if result.error:  # the retrain failed before: keep both
            failure = f"{result.failed_stage}: {result.error}; {stage}: {failure}"
        result.failed_stage, result.error = stage, failure
        rejected = stage == "ingest" and not simulate and isinstance(error, DataError)
        kind = "batch_rejected" if rejected else "loop_failed"
        alert(config, workdir, kind, f"loop stage {stage} failed: {result.error}", stage=stage)
    return result


def _advance_rollout(config: FlywheelConfig, workdir: Workdir) -> tuple[str | None, str | None]:
    """Move the loop's own rollout on (``rollout.stages``) when its stage is done: (what happened, or
    None without one; the rollout still running, described, or None once it ended)."""
    client = registry.mlflow_client(config, workdir)
    rollout = rollout_state.current(client, config.registry.model_name)
    if rollout is None or not rollout.automatic:
        return None, None
    counted = 0
    if workdir.predictions.is_dir():
        figures = ArmCounter(workdir.predictions, rollout, since=rollout.stage_started_at).update()
        counted = figures[CHALLENGER].predictions + figures[SHADOW].predictions
    moved = rollout_state.advance(config, workdir, counted)
    running = rollout_state.current(client, config.registry.model_name)
    still = running.describe() if running is not None and running.automatic else None
    return moved or f"{rollout.describe()}: {counted:,} challenger predictions in this stage so far", still


def run(
    config: FlywheelConfig,
    workdir: Workdir,
    cron: str | None = None,
    once: bool = False,
    simulate: bool = False,
    on_stage: Callable[[str, str], None] | None = None,
    on_tick: Callable[[Tick], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Tick | None:
    """Tick now with ``once``; otherwise tick at every time of ``cron`` (UTC) until interrupted."""
    from croniter import croniter

    if once:
        result = tick(config, workdir, simulate, on_stage)
        if on_tick:
            on_tick(result)
        return result
    while True:  # the next time from now: a tick longer than the interval skips, never piles up
        due = croniter(cron or config.retrain.cron, datetime.now(UTC)).get_next(datetime)
        _logger.info("next loop tick at %s", due.isoformat())
        sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        try:
            result = tick(config, workdir, simulate, on_stage)
        except WorkdirBusy as busy:  # a manual command is writing: skip this tick, keep the loop
            _logger.warning("loop tick skipped: %s", busy)
            continue
        if on_tick:
            on_tick(result)
