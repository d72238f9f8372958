"""The in-process runner: executes the DAG in order, records every state change, resumes.

Ctrl-C marks the run and its running step ``CANCELLED``; an exception marks the step ``FAILED``
(with the error) and every step after it ``SKIPPED``; a step raising ``StepSkipped`` is ``SKIPPED``
and so is everything downstream of it. ``resume`` reuses the outputs of succeeded steps and runs the
rest. Only the last step, ``publish``, changes what is served (the online store, the champion alias),
so a failed or cancelled run never does.

A run may be for a logical date (an orchestrator's ``{{ ds }}``): every step sees it in its
``StepContext``; the runner records it as the run's ``logical_date`` parameter, ``flywheel step``
returns it with the step's outputs as ``_logical_date``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import date
from typing import Any

from flywheel import cancel
from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.errors import ConfigError, FlywheelError
from flywheel.lock import locks_workdir
from flywheel.pipeline import runs
from flywheel.pipeline.context import StepContext, StepSkipped
from flywheel.pipeline.dag import PARAMETERS, Step, pipeline_for, steps_for
from flywheel.training import tracking
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
LOGICAL_DATE = "logical_date"  # a run parameter; a single step returns it as "_logical_date"


def apply_params(config: FlywheelConfig, params: dict[str, Any]) -> FlywheelConfig:
    """Apply seed-000-style pipeline parameters (``train_ratio=0.8``) to the config."""
    overrides: dict[str, Any] = {}
    model_params = dict(config.training.params)
    for name, value in params.items():
        if name not in PARAMETERS or PARAMETERS[name] is None:
            settable = sorted(k for k, v in PARAMETERS.items() if v)
            raise ConfigError(
                f"--param {name}: unknown or read-only pipeline parameter; settable: {settable}"
            )
        key = PARAMETERS[name]
        if key.startswith("training.params."):
            model_params[key.removeprefix("training.params.")] = value
        else:
            overrides[key] = value
    if model_params != config.training.params:
        overrides["training.params"] = model_params
    return apply_overrides(config, overrides)


def describe_params(config: FlywheelConfig) -> dict[str, str]:
    values = {"label_column": config.labels.label_column, "time_column": "label_timestamp"}
    dumped = config.model_dump(mode="json")
    for name, key in PARAMETERS.items():
        if key is None:
            continue
        node: Any = dumped
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[name] = "" if node is None else str(node)
    return values


class _Heartbeat(threading.Thread):
    def __init__(self, store: runs.Store, run_id: str):
        super().__init__(daemon=True)
        self.store, self.run_id, self.stopped = store, run_id, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(runs.HEARTBEAT_EVERY):
            try:
                self.store.set(self.run_id, heartbeat=time.time())
            except Exception:  # a missed beat is not worth failing the pipeline for
                _logger.debug("heartbeat failed", exc_info=True)


@locks_workdir("pipeline run")
def run_pipeline(
    config: FlywheelConfig,
    workdir: Workdir,
    params: dict[str, Any] | None = None,
    resume: str | None = None,
    on_event: Callable[[str, str], None] | None = None,
    logical_date: date | None = None,
) -> runs.PipelineRecord:
    """Run the pipeline (or resume ``resume``) and return its final record. Ctrl-C cancels at the
    next safe point (between steps, trials, chunks); a second Ctrl-C stops at once.

    Args:
        config: The effective config.
        workdir: The workdir the steps share.
        params: Seed-000 pipeline parameters (``train_ratio=0.8``).
        resume: A failed or cancelled run to finish; it keeps the logical date it started with.
        on_event: Called with (step, status) at every state change.
        logical_date: The date the run is for, handed to every step.
    """
    with cancel.deferred_sigint():
        return _run_pipeline(config, workdir, params, resume, on_event, logical_date)


def _run_pipeline(
    config: FlywheelConfig,
    workdir: Workdir,
    params: dict[str, Any] | None,
    resume: str | None,
    on_event: Callable[[str, str], None] | None,
    logical_date: date | None,
) -> runs.PipelineRecord:
    params = params or {}
    config = apply_params(config, params)
    store = runs.Store(config, workdir)
    pipeline = pipeline_for(config.spec)
    outputs: dict[str, dict[str, str]] = {}
    if resume:
        previous = store.get(resume)
        if previous.status == runs.RUNNING:
            raise FlywheelError(f"pipeline run {resume} is still running")
        if [step.name for step in previous.steps] != [step.name for step in pipeline]:
            raise FlywheelError(
                f"pipeline run {resume} has the steps {[step.name for step in previous.steps]}, not this "
                f"version's {[step.name for step in pipeline]}: it cannot be resumed; start a new run"
            )
        logical_date = _resumed_logical_date(previous, logical_date)
        run_id = resume
        step_ids = store.step_runs(run_id)
        for step in previous.steps:
            if step.status == runs.SUCCEEDED:
                outputs[step.name] = step.outputs
        store.set(
            run_id,
            status=runs.RUNNING,
            heartbeat=time.time(),
            ended=None,
            error=None,
            pid=__import__("os").getpid(),
            resumed_at=time.time(),
        )
        store.client.update_run(run_id, status="RUNNING")
    else:
        recorded = describe_params(config)
        if logical_date is not None:
            recorded[LOGICAL_DATE] = logical_date.isoformat()
        run_id = store.create(recorded, [s.name for s in pipeline])
        step_ids = store.step_runs(run_id)
    ctx = StepContext(config, workdir, run_id, logical_date)
    heartbeat = _Heartbeat(store, run_id)
    heartbeat.start()
    status, error = runs.SUCCEEDED, None
    try:
        blocked: set[str] = set()
        for step in pipeline:
            cancel.check()
            child = step_ids[step.name]
            if step.name in outputs:
                _emit(on_event, step.name, "reused")
                continue
            if any(up in blocked for up in step.upstream):
                store.finish(
                    child,
                    runs.SKIPPED,
                    error=f"upstream {', '.join(sorted(blocked & set(step.upstream)))} did not succeed",
                )
                blocked.add(step.name)
                _emit(on_event, step.name, runs.SKIPPED)
                continue
            result = _run_step(store, child, step, ctx, outputs, on_event)
            if result == runs.SUCCEEDED:
                continue
            blocked.add(step.name)
            if result == runs.FAILED:
                status, error = runs.FAILED, f"step {step.name} failed"
    except KeyboardInterrupt:
        status, error = runs.CANCELLED, "cancelled by the user (Ctrl-C)"
        _close_unfinished(store, step_ids, outputs, runs.CANCELLED, error)
        raise
    except BaseException as exc:  # the runner itself broke: never leave the run marked as succeeded
        status, error = runs.FAILED, f"runner error: {type(exc).__name__}: {exc}"
        _close_unfinished(store, step_ids, outputs, runs.FAILED, error)
        raise
    finally:
        heartbeat.stopped.set()
        store.finish(run_id, status, error=error)
    return store.get(run_id)


def _resumed_logical_date(previous: runs.PipelineRecord, given: date | None) -> date | None:
    """The logical date a resumed run goes on with: the one it started with; another one is refused."""
    recorded = previous.params.get(LOGICAL_DATE)
    started_with = date.fromisoformat(recorded) if recorded else None
    if given is not None and given != started_with:
        raise FlywheelError(
            f"pipeline run {previous.run_id} is for logical date {recorded or '(none)'}, not {given}: "
            "resume it without --logical-date, or start a new run"
        )
    return started_with


def _run_step(
    store: runs.Store,
    child: str,
    step: Step,
    ctx: StepContext,
    outputs: dict[str, dict[str, str]],
    on_event: Callable[[str, str], None] | None,
) -> str:
    inputs = {name: outputs[source][output] for name, (source, output) in step.inputs.items()}
    store.set(child, status=runs.RUNNING, started=time.time(), inputs=json.dumps(inputs))
    store.client.update_run(child, status="RUNNING")
    _emit(on_event, step.name, runs.RUNNING)
    try:
        result = step.run(ctx, **inputs)
    except StepSkipped as skipped:
        store.finish(child, runs.SKIPPED, error=str(skipped))
        _emit(on_event, step.name, runs.SKIPPED)
        return runs.SKIPPED
    except KeyboardInterrupt:
        store.finish(child, runs.CANCELLED, error="cancelled by the user (Ctrl-C)")
        _emit(on_event, step.name, runs.CANCELLED)
        raise
    except Exception as exc:  # any failure of a step is recorded, not raised
        message = f"{type(exc).__name__}: {exc}"
        store.finish(child, runs.FAILED, error=message[:4000], traceback=traceback.format_exc()[-4000:])
        _emit(on_event, step.name, runs.FAILED)
        _logger.error("step %s failed: %s", step.name, message)
        return runs.FAILED
    outputs[step.name] = result
    store.finish(child, runs.SUCCEEDED, outputs=json.dumps(result))
    _emit(on_event, step.name, runs.SUCCEEDED)
    return runs.SUCCEEDED


def resolve_inputs(step: Step, explicit: dict[str, str], upstream: list[dict[str, str]]) -> dict[str, str]:
    """A step's inputs from ``--input name=value`` pairs and upstream outputs (each carrying ``_step``)."""
    by_step = {outputs.get("_step"): outputs for outputs in upstream}
    inputs = {}
    for name, (source, output) in step.inputs.items():
        if name in explicit:
            inputs[name] = explicit[name]
        elif source in by_step and output in by_step[source]:
            inputs[name] = by_step[source][output]
    missing = [name for name in step.inputs if name not in inputs]
    if missing:
        raise ConfigError(
            f"step {step.name} needs input(s) {missing}: pass --input NAME=VALUE or the "
            f"outputs of {sorted({step.inputs[m][0] for m in missing})} with --upstream-json"
        )
    return inputs


def _close_unfinished(
    store: runs.Store, step_ids: dict[str, str], outputs: dict[str, dict[str, str]], status: str, error: str
) -> None:
    """Give every step that had not finished a final status: the running one ``status``, the rest SKIPPED."""
    for name, child in step_ids.items():
        if name in outputs:
            continue
        try:
            current = store.client.get_run(child).data.tags.get("flywheel.status")
        except Exception:  # the store may be unusable after an interrupt: assume the step was running
            current = runs.RUNNING
        if current in (runs.RUNNING, runs.PENDING):
            store.finish(child, status if current == runs.RUNNING else runs.SKIPPED, error=error)


@locks_workdir("step")
def run_single_step(
    config: FlywheelConfig,
    workdir: Workdir,
    name: str,
    explicit: dict[str, str],
    upstream: list[dict[str, str]],
    pipeline_run_id: str | None = None,
    logical_date: date | None = None,
) -> dict[str, str]:
    """Run one step outside the runner: the contract ``flywheel step`` gives every orchestrator.

    Args:
        config: The effective config.
        workdir: The workdir the steps share.
        name: The step to run.
        explicit: Inputs given by name (``--input``).
        upstream: Outputs of upstream steps, each carrying ``_step`` (``--upstream-json``).
        pipeline_run_id: The pipeline run the step belongs to, if any.
        logical_date: The date the orchestrator's run is for (Airflow's ``{{ ds }}``).

    Returns:
        The step's outputs with ``_step`` and, when given, ``_logical_date`` (YYYY-MM-DD).

    Raises:
        StepSkipped: the step's condition does not hold, or an upstream step was skipped (its outputs
            carry ``skipped``); the CLI exits 99, which Airflow reads as skip.
    """
    steps = steps_for(config.spec)
    if name not in steps:
        raise ConfigError(f"unknown step '{name}'; expected one of {list(steps)}")
    step = steps[name]
    skipped = next((outputs for outputs in upstream if outputs.get("skipped") == "true"), None)
    if skipped is not None:  # a skip passes downstream, as Airflow's does (KFP tasks hand it on)
        raise StepSkipped(f"upstream step {skipped.get('_step')} was skipped: {skipped.get('reason', '')}")
    inputs = resolve_inputs(step, explicit, upstream)
    # the runner's steps find MLflow pointed at the workdir's store (runs.Store does it); a step run
    # alone in a fresh process must too, or reading an upstream run would open ./mlflow.db instead
    tracking.setup(config, workdir)
    outputs = step.run(StepContext(config, workdir, pipeline_run_id, logical_date), **inputs)
    dated = {f"_{LOGICAL_DATE}": logical_date.isoformat()} if logical_date else {}
    return {"_step": name, **dated, **outputs}


def _emit(on_event: Callable[[str, str], None] | None, step: str, status: str) -> None:
    if on_event:
        on_event(step, status)
