"""Compile the pipeline for real orchestrators: Kubeflow Pipelines v2 (Vertex AI runs the same YAML)
and Apache Airflow. Every task runs ``flywheel step NAME`` against a workdir the tasks share and hands
its outputs (JSON with artifact URIs) to the tasks downstream: a KFP task in the configured image, an
Airflow task through the ``flywheel`` executable for its run's logical date (``{{ ds }}``), with
retries and callbacks that POST each task's outcome to the alert webhook."""

import json
import re
import shutil
import sys
from pathlib import Path

from kfp import dsl

from flywheel.config import AlertsConfig
from flywheel.pipeline.dag import PIPELINE, Step


def flywheel_step(
    step: str,
    workdir: str,
    config: str,
    outputs: dsl.OutputPath(str),
    proceed: dsl.OutputPath(str),
    up1: str = "",
    up2: str = "",
    up3: str = "",
) -> None:
    """Run ``flywheel step`` in this container; ``proceed`` is false when the step's condition fails."""
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "flywheel", "--config", config, "--workdir", workdir, "step", step]
    for upstream in (up1, up2, up3):  # the most upstream steps any step has (dag.py)
        if upstream:
            command += ["--upstream-json", upstream]
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode == 99:  # the step's condition does not hold
        result, go = {"_step": step, "skipped": "true"}, "false"
    elif done.returncode != 0:
        raise RuntimeError(f"flywheel step {step} failed with exit code {done.returncode}")
    else:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        go = result.get("passed", "true")
    with open(outputs, "w") as handle:
        handle.write(json.dumps(result))
    with open(proceed, "w") as handle:
        handle.write(go)


def kfp_pipeline(
    image: str,
    workdir: str,
    config: str,
    steps: list[str] | None = None,
    name: str = "training",
    pipeline_steps: tuple[Step, ...] = PIPELINE,
):
    """The pipeline as a KFP pipeline function (``steps`` limits it to a prefix of the DAG;
    ``pipeline_steps``: the use case's, :func:`flywheel.pipeline.dag.pipeline_for`)."""
    component = dsl.component(flywheel_step, base_image=image, install_kfp_package=False)
    chosen = [s for s in pipeline_steps if steps is None or s.name in steps]

    @dsl.pipeline(
        name=f"flywheel-{name}".replace("_", "-"),
        description=" → ".join(step.name for step in pipeline_steps),
    )
    def pipeline() -> None:
        tasks: dict[str, object] = {}
        for step in chosen:
            upstream = [tasks[name].outputs["outputs"] for name in step.upstream if name in tasks]
            kwargs = {f"up{i + 1}": value for i, value in enumerate(upstream)}
            tasks[step.name] = component(step=step.name, workdir=workdir, config=config, **kwargs)
            tasks[step.name].set_display_name(step.name)
            tasks[step.name].set_caching_options(False)

    return pipeline


def compile_kfp(
    path: Path,
    image: str,
    workdir: str,
    config: str,
    steps: list[str] | None = None,
    name: str = "training",
    pipeline_steps: tuple[Step, ...] = PIPELINE,
) -> Path:
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiled = kfp_pipeline(image, workdir, config, steps, name, pipeline_steps)
    compiler.Compiler().compile(compiled, str(path))
    return path


def flywheel_executable() -> str:
    """The absolute path of the ``flywheel`` command beside this interpreter, else on PATH, else the name."""
    beside = shutil.which("flywheel", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("flywheel")
    return str(Path(found).absolute()) if found else "flywheel"


def airflow_dag(
    workdir: str,
    config: str,
    schedule: str,
    retries: int = 2,
    name: str = "flywheel",
    *,
    flywheel: str | None = None,
    alerts: AlertsConfig | None = None,
    pipeline_steps: tuple[Step, ...] = PIPELINE,
) -> str:
    """The source of an Airflow DAG file running the pipeline, one ``BashOperator`` per step.

    The file needs nothing of flywheel's Python package: its tasks call the ``flywheel`` executable and
    its callbacks are written out in it.

    Args:
        workdir: The workdir the tasks share (absolute: tasks run in a temporary folder).
        config: The config file the tasks load (absolute, for the same reason).
        schedule: The DAG's schedule (cron, a preset such as ``@weekly``, or ``none``: triggered only).
        retries: Retries of each task (``default_args``); the delay is Airflow's
            ``[core] default_task_retry_delay``.
        name: The use case, naming the DAG ``flywheel_<name>_training``.
        flywheel: The ``flywheel`` executable (default: this one); ``$FLYWHEEL_BIN`` on the worker wins.
        alerts: Where the task callbacks POST (default: nowhere, they only log);
            ``$FLYWHEEL_ALERT_WEBHOOK_URL`` on the worker wins.
    """
    alerts = alerts or AlertsConfig()
    constants = {
        "USE_CASE": name,
        "STEPS": " → ".join(step.name for step in pipeline_steps),
        "DAG_ID": f"flywheel_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}_training",
        "SCHEDULE": None if schedule.strip().lower() in ("", "none") else schedule,
        "RETRIES": retries,
        "FLYWHEEL": flywheel or flywheel_executable(),
        "CONFIG": config,
        "WORKDIR": workdir,
        "WEBHOOK_URL": alerts.webhook_url,
        "WEBHOOK_TIMEOUT_SECONDS": alerts.timeout_seconds,
    }
    tasks, edges = [], []
    for step in pipeline_steps:
        upstream = f", {json.dumps(step.upstream)}" if step.upstream else ""
        tasks.append(f'    {step.name}_task = flywheel_task("{step.name}"{upstream})')
        edges.extend(f"    {up}_task >> {step.name}_task" for up in step.upstream)
    lines = [
        _AIRFLOW_HEADER.format(name=name).rstrip("\n"),
        *(f"{key} = {_literal(value)}" for key, value in constants.items()),
        _AIRFLOW_BODY,
        *tasks,
        "",
        *edges,
    ]
    return "\n".join(lines) + "\n"


def _literal(value: object) -> str:
    """``value`` as Python source, strings double-quoted as the rest of the generated file."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


# The generated file, in three parts: its docstring and imports, the constants compiled in (above),
# and the callbacks, task factory and DAG. The body is plain text, not a format string, so that the
# Jinja ({{ ds }}) and shell ($out) syntax in it reads as it runs.
_AIRFLOW_HEADER = '''"""Flywheel {name} training pipeline for Apache Airflow 3 (and 2).

Generated by `flywheel pipeline compile --target airflow`; edits are overwritten.

Every task runs `flywheel --config CONFIG --workdir WORKDIR step NAME --logical-date {{{{ ds }}}}`: the
step prints its outputs as a last line of JSON, which becomes the task's XCom, and downstream tasks get
them through environment variables (so no quoting can break them). Exit code 99 skips a task whose
condition does not hold (a failed validation or quality gate) and everything after it.

Nothing here imports flywheel: the tasks call the `flywheel` executable, $FLYWHEEL_BIN on the worker
or else the FLYWHEEL path below, and the callbacks POST each task's outcome as JSON to
$FLYWHEEL_ALERT_WEBHOOK_URL or else WEBHOOK_URL below (neither: they only log). Retries come from
pipeline.retries; the delay between them is Airflow's [core] default_task_retry_delay.
"""

import json
import logging
import os
import shlex
import urllib.request
from datetime import datetime, timezone

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

_logger = logging.getLogger(__name__)

# Compiled from the config. $FLYWHEEL_BIN and $FLYWHEEL_ALERT_WEBHOOK_URL on the worker win over
# FLYWHEEL and WEBHOOK_URL; a webhook URL is a credential: when this file is shared, leave
# alerts.webhook_url unset at compile time and give the workers the variable instead.
'''

_AIRFLOW_BODY = r'''

def _notify(context, state):
    """Log a task's outcome and POST it to the alert webhook (Slack-compatible `text`); never raises."""
    ti = context["ti"]
    logical_date = context.get("ds")
    details = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "logical_date": logical_date,
        "state": state,
        "try_number": ti.try_number,
        "log_url": getattr(ti, "log_url", None),
    }
    if context.get("exception") is not None:
        details["error"] = str(context["exception"])[:1000]
    text = f"[flywheel {USE_CASE}] {ti.dag_id}.{ti.task_id} {state} for {logical_date} (try {ti.try_number})"
    _logger.log(logging.INFO if state == "success" else logging.WARNING, "%s", text)
    url = os.environ.get("FLYWHEEL_ALERT_WEBHOOK_URL") or WEBHOOK_URL
    if not url:
        return
    payload = {
        "text": text,
        "kind": f"airflow_task_{state}",
        "use_case": USE_CASE,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "details": details,
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except OSError as error:  # an unreachable webhook must not change the task's outcome
        _logger.warning("the alert webhook failed: %s", error)


def on_failure(context):
    _notify(context, "failed")


def on_success(context):
    _notify(context, "success")


def on_retry(context):
    _notify(context, "up_for_retry")


def flywheel_task(step, upstream=()):
    """`flywheel step STEP` for the run's logical date, given the XCom outputs of `upstream`."""
    # only the XComs travel in `env`: BashOperator would load any value ending in .sh as a template
    env = {
        f"FLYWHEEL_UPSTREAM_{i}": "{{ ti.xcom_pull(task_ids='" + name + "') }}"
        for i, name in enumerate(upstream)
    }
    pulls = "".join(f' --upstream-json "$FLYWHEEL_UPSTREAM_{i}"' for i in range(len(upstream)))
    command = [
        'flywheel="$FLYWHEEL_BIN"',
        f'[ -n "$flywheel" ] || flywheel={shlex.quote(FLYWHEEL)}',
        # stdout is kept apart from the log (stderr) and only its last line, the outputs, is echoed:
        # the last line printed is what BashOperator pushes as the XCom
        f'out="$("$flywheel" --config {shlex.quote(CONFIG)} --workdir {shlex.quote(WORKDIR)} step {step} '
        f"--logical-date '{{{{ ds }}}}'{pulls})\" || exit $?",
        "printf '%s\\n' \"$out\" | tail -n 1",
    ]
    return BashOperator(
        task_id=step,
        bash_command="\n".join(command),
        env=env,
        append_env=True,
        skip_on_exit_code=99,
    )


with DAG(
    dag_id=DAG_ID,
    description=f"Flywheel {USE_CASE}: {STEPS}",
    doc_md=__doc__,
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # the tasks share one workdir
    default_args={
        "owner": "flywheel",
        "retries": RETRIES,
        "on_failure_callback": on_failure,
        "on_success_callback": on_success,
        "on_retry_callback": on_retry,
    },
    tags=["flywheel", USE_CASE],
) as dag:'''
