"""``flywheel pipeline`` and ``flywheel step``: run, watch, list and compile the training pipeline."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from flywheel.cli.context import STATE, console, err_console, parse_sets
from flywheel.config import DEFAULT_CONFIG_PATH
from flywheel.pipeline import runs
from flywheel.pipeline.context import StepSkipped
from flywheel.pipeline.dag import pipeline_for
from flywheel.pipeline.runner import run_pipeline, run_single_step

app = typer.Typer(help="The training pipeline: run, monitor, list, compile.", no_args_is_help=True)
COLORS = {
    runs.SUCCEEDED: "green",
    runs.FAILED: "red",
    runs.RUNNING: "yellow",
    runs.CANCELLED: "magenta",
    runs.SKIPPED: "grey50",
    runs.PENDING: "white",
}
SKIP_EXIT_CODE = 99
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _logical_date(value: str) -> date:
    """``--logical-date``: a calendar date written YYYY-MM-DD, as Airflow renders ``{{ ds }}``."""
    # date.fromisoformat alone also takes 20240301 or 2024-W09-5: orchestrators get one strict form
    if _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise typer.BadParameter(f"{value!r} is not a calendar date as YYYY-MM-DD (e.g. 2024-03-01)")


LogicalDate = Annotated[
    date | None,
    typer.Option(
        "--logical-date",
        parser=_logical_date,
        metavar="YYYY-MM-DD",
        help="The date this run is for (Airflow's {{ ds }}); every step receives it.",
    ),
]


def _context():
    config = STATE.config()
    return config, STATE.workdir_for(config)


def _table(record: runs.PipelineRecord, color: bool = True) -> Table:
    started = datetime.fromtimestamp(record.started, UTC) if record.started else None
    title = f"pipeline {record.run_id} — {record.status}" + (
        f" (started {started:%Y-%m-%d %H:%M:%S})" if started else ""
    )
    table = Table("step", "status", "duration", "outputs / error", title=title)
    for step in record.steps:
        status = f"[{COLORS[step.status]}]{step.status}[/]" if color else step.status
        seconds = f"{step.seconds:.1f}s" if step.seconds is not None else ""
        detail = step.error or ", ".join(f"{k}={v}" for k, v in step.outputs.items() if k not in ("summary",))
        table.add_row(step.name, status, seconds, detail[:90])
    return table


@app.command("run")
def run_command(
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Pipeline parameter NAME=VALUE, repeatable.")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Rerun a failed or cancelled run from its first unfinished step, reusing what succeeded."
        ),
    ] = None,
    logical_date: LogicalDate = None,
) -> None:
    """Run the pipeline in-process; every run and step is recorded in MLflow."""
    config, workdir = _context()
    params = parse_sets(param or [])
    record = run_pipeline(
        config,
        workdir,
        params,
        resume=resume,
        on_event=lambda step, status: err_console.print(f"  {step}: {status}"),
        logical_date=logical_date,
    )
    console.print(_table(record))
    if record.status != runs.SUCCEEDED:
        raise typer.Exit(1)


@app.command("list")
def list_command(limit: Annotated[int, typer.Option(help="Runs to show.")] = 20) -> None:
    """Recent pipeline runs with their status."""
    config, workdir = _context()
    table = Table("run", "status", "started", "duration", "steps")
    for record in runs.Store(config, workdir).list(limit):
        started = datetime.fromtimestamp(record.started, UTC) if record.started else None
        duration = (record.ended or time.time()) - record.started if record.started else None
        done = sum(s.status == runs.SUCCEEDED for s in record.steps)
        table.add_row(
            record.run_id,
            record.status,
            f"{started:%Y-%m-%d %H:%M:%S}" if started else "",
            f"{duration:.0f}s" if duration else "",
            f"{done}/{len(record.steps)} succeeded",
        )
    console.print(table)


@app.command()
def monitor(
    run_id: Annotated[str | None, typer.Argument(help="Pipeline run id.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Watch the newest run.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 10.0,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain text.")] = False,
) -> None:
    """A live table of step states and durations; exits when the run ends (exit 1 unless it succeeded)."""
    config, workdir = _context()
    store = runs.Store(config, workdir)
    if run_id is None:
        if not latest:
            raise typer.BadParameter("give a RUN_ID or --latest")
        run_id = store.latest()
    record = store.get(run_id)
    with Live(_table(record, not no_color), console=console, auto_refresh=False) as live:
        while record.status not in runs.FINISHED:
            time.sleep(interval)
            record = store.get(run_id)
            live.update(_table(record, not no_color), refresh=True)
    if record.status != runs.SUCCEEDED:
        raise typer.Exit(1)


@app.command("compile")
def compile_command(
    target: Annotated[str, typer.Option(help="kfp (Kubeflow / Vertex AI) or airflow.")] = "kfp",
    output: Annotated[Path | None, typer.Option(help="File to write.")] = None,
) -> None:
    """Write the pipeline for a real orchestrator; each task runs `flywheel step NAME` in a folder of
    its own, staging the workdir in from pipeline.artifact_store (default: this workdir) and out.

    The KFP pipeline carries the config (without its credentials) and takes a logical_date parameter.
    The Airflow DAG (`flywheel_<use case>_training`) calls this `flywheel` executable by its absolute
    path ($FLYWHEEL_BIN on the worker overrides it) with this config file, for each run's logical date;
    its task callbacks POST to alerts.webhook_url.
    """
    from flywheel.pipeline import compile as compiler

    config = STATE.config()
    # compiling only names the store the tasks will stage from; it need not exist here
    workdir = STATE.workdir_for(config, must_exist=False)
    store = config.pipeline.artifact_store or str(workdir.root)
    if "://" not in store:  # a local path: tasks run elsewhere, so it must not be relative
        store = str(Path(store).expanduser().absolute())
    if target == "kfp" and not config.pipeline.artifact_store:
        err_console.print(
            f"warning: pipeline.artifact_store is not set: the tasks will stage from {store}, a path on "
            "this machine; set it to a URL the cluster reaches (s3://…, gs://…) unless the tasks run "
            "here (kfp.local) or have a volume mounted at that path"
        )
    if target == "kfp":
        path = compiler.compile_kfp(
            output or Path("flywheel_pipeline.yaml"),
            config.pipeline.image,
            config,
            store,
            pipeline_steps=pipeline_for(config.spec),
        )
    elif target == "airflow":
        path = output or Path("flywheel_dag.py")
        # Airflow runs each task in a temporary folder: a relative config path would not be found
        config_path = str(Path(STATE.config_path or DEFAULT_CONFIG_PATH).absolute())
        path.write_text(
            compiler.airflow_dag(
                store,
                config_path,
                config.pipeline.schedule,
                config.pipeline.retries,
                config.spec.name,
                alerts=config.alerts,
                pipeline_steps=pipeline_for(config.spec),
            )
        )
    else:
        raise typer.BadParameter(f"unknown target {target!r}; expected kfp or airflow")
    console.print(f"wrote {path}")


def step_command(
    name: Annotated[
        str,
        typer.Argument(
            help="validate | features | data_load | train | eval | model_upload | promote | publish"
        ),
    ],
    input_: Annotated[list[str] | None, typer.Option("--input", help="Input NAME=VALUE, repeatable.")] = None,
    upstream_json: Annotated[
        list[str] | None, typer.Option("--upstream-json", help="Outputs JSON of an upstream step.")
    ] = None,
    pipeline_run_id: Annotated[str | None, typer.Option(help="Pipeline run this step belongs to.")] = None,
    logical_date: LogicalDate = None,
    artifact_store: Annotated[
        str | None,
        typer.Option(
            help="Run in a temporary folder of its own, staging the workdir in from this store (a path, "
            "s3://…, gs://…) and what the step changed back out; --workdir is then not used.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one pipeline step; prints its outputs as JSON (the last line). Exit 99: the step's condition
    does not hold or an upstream step was skipped (the last line then says so: ``skipped``, ``reason``)."""
    config = STATE.config()
    explicit = dict(item.split("=", 1) for item in (input_ or []) if "=" in item)
    upstream = [json.loads(text) for text in (upstream_json or []) if text.strip()]
    try:
        if artifact_store:
            from flywheel.pipeline.staging import ArtifactStore, run_staged

            store = ArtifactStore(artifact_store)
            outputs = run_staged(config, store, name, explicit, upstream, pipeline_run_id, logical_date)
        else:
            workdir = STATE.workdir_for(config)
            outputs = run_single_step(
                config, workdir, name, explicit, upstream, pipeline_run_id, logical_date=logical_date
            )
    except StepSkipped as skipped:
        err_console.print(f"step {name} skipped: {skipped}")
        sys.stdout.write(json.dumps({"_step": name, "skipped": "true", "reason": str(skipped)}) + "\n")
        raise typer.Exit(SKIP_EXIT_CODE) from None
    sys.stdout.write(json.dumps(outputs) + "\n")
