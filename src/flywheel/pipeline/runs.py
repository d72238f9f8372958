"""Pipeline-run metadata in MLflow: a parent run per pipeline run, a child run per step.

Statuses (``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``CANCELLED``, ``SKIPPED``), times,
parameters, outputs and errors are tags, so runs show in the MLflow UI beside the experiments. A
runner refreshes ``flywheel.heartbeat`` every few seconds; a run still ``RUNNING`` whose heartbeat is
older than ``STALE_AFTER`` and whose process is gone is reported — and recorded — as ``FAILED``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.training import tracking
from flywheel.workdir import Workdir

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, SKIPPED = (
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "SKIPPED",
)
FINISHED = {SUCCEEDED, FAILED, CANCELLED, SKIPPED}
STALE_AFTER = 30.0
HEARTBEAT_EVERY = 5.0
_MLFLOW_END = {SUCCEEDED: "FINISHED", SKIPPED: "FINISHED", FAILED: "FAILED", CANCELLED: "KILLED"}


@dataclass
class StepRecord:
    name: str
    status: str
    run_id: str | None = None
    started: float | None = None
    ended: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


@dataclass
class PipelineRecord:
    run_id: str
    status: str
    started: float
    ended: float | None
    params: dict[str, str]
    steps: list[StepRecord]
    error: str | None = None


class Store:
    """Reads and writes pipeline runs in the ``<experiment>-pipelines`` MLflow experiment."""

    def __init__(self, config: FlywheelConfig, workdir: Workdir):
        from mlflow import MlflowClient

        tracking.setup(config, workdir)
        self.client = MlflowClient()
        name = f"{config.tracking.experiment}-pipelines"
        self.experiment_id = tracking.ensure_experiment(self.client, config, workdir, name)

    def create(self, params: dict[str, str], steps: list[str]) -> str:
        now = time.time()
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"pipeline-{datetime.now(UTC):%Y%m%d-%H%M%S}",
            tags={"flywheel.kind": "pipeline"},
        )
        run_id = run.info.run_id
        self.set(
            run_id,
            status=RUNNING,
            started=now,
            heartbeat=now,
            pid=os.getpid(),
            host=socket.gethostname(),
            steps=json.dumps(steps),
        )
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        for name in steps:
            child = self.client.create_run(
                self.experiment_id,
                run_name=name,
                tags={"mlflow.parentRunId": run_id, "flywheel.kind": "step", "flywheel.step": name},
            )
            self.set(child.info.run_id, status=PENDING)
        return run_id

    def set(self, run_id: str, **values: Any) -> None:
        for key, value in values.items():
            self.client.set_tag(run_id, f"flywheel.{key}", "" if value is None else str(value))

    def finish(self, run_id: str, status: str, **values: Any) -> None:
        self.set(run_id, status=status, ended=time.time(), **values)
        self.client.set_terminated(run_id, _MLFLOW_END.get(status, "FINISHED"))

    def step_runs(self, run_id: str) -> dict[str, str]:
        children = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=100
        )
        return {c.data.tags["flywheel.step"]: c.info.run_id for c in children}

    def list(self, limit: int = 20) -> list[PipelineRecord]:
        runs = self.client.search_runs(
            [self.experiment_id],
            "tags.`flywheel.kind` = 'pipeline'",
            max_results=limit,
            order_by=["attributes.start_time DESC"],
        )
        return [self.get(r.info.run_id) for r in runs]

    def latest(self) -> str:
        runs = self.list(limit=1)
        if not runs:
            raise FlywheelError("no pipeline runs yet; start one with `flywheel pipeline run`")
        return runs[0].run_id

    def get(self, run_id: str) -> PipelineRecord:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise FlywheelError(f"no pipeline run {run_id}") from None
        tags = run.data.tags
        if tags.get("flywheel.kind") != "pipeline":
            raise FlywheelError(f"run {run_id} is not a pipeline run")
        order = json.loads(tags.get("flywheel.steps", "[]"))
        children = {
            c.data.tags["flywheel.step"]: c
            for c in self.client.search_runs(
                [self.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=100
            )
        }
        steps = []
        for name in order:
            child = children.get(name)
            ctags = child.data.tags if child else {}
            steps.append(
                StepRecord(
                    name=name,
                    status=ctags.get("flywheel.status", PENDING),
                    run_id=child.info.run_id if child else None,
                    started=_float(ctags.get("flywheel.started")),
                    ended=_float(ctags.get("flywheel.ended")),
                    outputs=json.loads(ctags.get("flywheel.outputs") or "{}"),
                    error=ctags.get("flywheel.error") or None,
                )
            )
        record = PipelineRecord(
            run_id,
            tags.get("flywheel.status", PENDING),
            _float(tags.get("flywheel.started")) or 0,
            _float(tags.get("flywheel.ended")),
            dict(run.data.params),
            steps,
            tags.get("flywheel.error") or None,
        )
        if record.status == RUNNING and self._stale(tags):
            self._mark_stale(record)
        return record

    def _stale(self, tags: dict[str, str]) -> bool:
        """A run is stale when its runner's process is gone (same host) or its heartbeat is too old."""
        if tags.get("flywheel.host") == socket.gethostname():
            try:
                os.kill(int(tags.get("flywheel.pid", "0")), 0)
            except (OSError, ValueError):
                return True
            # the pid is alive, but it may have been reused by another process: trust the heartbeat
        beat = _float(tags.get("flywheel.heartbeat")) or 0
        return time.time() - beat > STALE_AFTER

    def _mark_stale(self, record: PipelineRecord) -> None:
        reason = "the runner stopped sending heartbeats (process killed?)"
        for step in record.steps:
            if step.status == RUNNING and step.run_id:
                self.finish(step.run_id, FAILED, error=reason)
                step.status, step.error = FAILED, reason
        self.finish(record.run_id, FAILED, error=reason)
        record.status, record.error = FAILED, reason


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
