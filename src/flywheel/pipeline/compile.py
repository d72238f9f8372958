"""Compile the pipeline for real orchestrators: Kubeflow Pipelines v2 (Vertex AI runs the same YAML)
and Apache Airflow. Every task runs ``flywheel step NAME --artifact-store URL`` in a folder of its own,
staging the workdir in from the artifact store and what it changed back out
(:mod:`flywheel.pipeline.staging`: no task assumes a disk it shares with another), and hands its
outputs (JSON naming the store's files and MLflow URIs) to the tasks downstream: a KFP task in the
configured image, an Airflow task through the ``flywheel`` executable for its run's logical date
(``{{ ds }}``), with retries and callbacks that POST each task's outcome to the alert webhook. A
skipped step (a failed validation or quality gate) skips every step after it on both."""

import json
import re
import shutil
import sys
from pathlib import Path

import yaml
from kfp import dsl

from flywheel.config import AlertsConfig, FlywheelConfig
from flywheel.pipeline.dag import PIPELINE, Step


def flywheel_step(
    step: str,
    config_yaml: str,
    artifact_store: str,
    logical_date: str,
    outputs: dsl.OutputPath(str),
    up1: str = "",
    up2: str = "",
    up3: str = "",
) -> None:
    """Run ``flywheel step`` in this container, in a folder of its own staged from the artifact store;
    a skipped step (exit 99) hands its ``skipped`` outputs on, and the steps downstream skip too."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="flywheel-config-") as folder:
        config = os.path.join(folder, "flywheel.yaml")
        with open(config, "w") as handle:
            handle.write(config_yaml)
        command = [sys.executable, "-m", "flywheel", "--config", config, "step", step]
        command += ["--artifact-store", artifact_store]
        if logical_date:
            command += ["--logical-date", logical_date]
        for upstream in (up1, up2, up3):  # the most upstream steps any step has (dag.py)
            if upstream:
                command += ["--upstream-json", upstream]
        done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode not in (0, 99):  # 99: the step's condition does not hold
        raise RuntimeError(f"flywheel step {step} failed with exit code {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with open(outputs, "w") as handle:
        handle.write(json.dumps(result))


def kfp_pipeline(
    image: str,
    config: FlywheelConfig,
    artifact_store: str,
    steps: list[str] | None = None,
    pipeline_steps: tuple[Step, ...] = PIPELINE,
):
    """The pipeline as a KFP pipeline function with a ``logical_date`` parameter (YYYY-MM-DD, empty:
    the newest data); ``steps`` limits it to a prefix of the DAG; ``pipeline_steps``: the use case's,
    :func:`flywheel.pipeline.dag.pipeline_for`.

    The tasks share no disk: each stages the workdir from ``artifact_store``. The config travels in
    the compiled pipeline, without its credentials (``serving.admin_token``, ``alerts.webhook_url``):
    give a task those, or a tracking server's password, as ``FLYWHEEL_SET__…`` or MLflow environment
    variables."""
    component = dsl.component(flywheel_step, base_image=image, install_kfp_package=False)
    chosen = [s for s in pipeline_steps if steps is None or s.name in steps]
    config_yaml = portable_config(config)

    @dsl.pipeline(
        name=f"flywheel-{config.spec.name}".replace("_", "-"),
        description=" → ".join(step.name for step in pipeline_steps),
    )
    def pipeline(logical_date: str = "") -> None:
        tasks: dict[str, object] = {}
        for step in chosen:
            upstream = [tasks[name].outputs["outputs"] for name in step.upstream if name in tasks]
            kwargs = {f"up{i + 1}": value for i, value in enumerate(upstream)}
            tasks[step.name] = component(
                step=step.name,
                config_yaml=config_yaml,
                artifact_store=artifact_store,
                logical_date=logical_date,
                **kwargs,
            )
            tasks[step.name].set_display_name(step.name)
            tasks[step.name].set_caching_options(False)

    return pipeline


def portable_config(config: FlywheelConfig) -> str:
    """The effective config as YAML for a task elsewhere, without its credentials."""
    dumped = config.model_dump(mode="json")
    dumped["serving"]["admin_token"] = None
    dumped["alerts"]["webhook_url"] = None
    return yaml.safe_dump(dumped, sort_keys=False)


def compile_kfp(
    path: Path,
    image: str,
    config: FlywheelConfig,
    artifact_store: str,
    steps: list[str] | None = None,
    pipeline_steps: tuple[Step, ...] = PIPELINE,
) -> Path:
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiled = kfp_pipeline(image, config, artifact_store, steps, pipeline_steps)
    compiler.Compiler().compile(compiled, str(path))
    return path


def flywheel_executable() -> str:
    """The absolute path of the ``flywheel`` command beside this interpreter, else on PATH, else the name."""
    beside = shutil.which("flywheel", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("flywheel")
    return str(Path(found).absolute()) if found else "flywheel"


def airflow_dag(
    artifact_store: str,
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
        artifact_store: Where each task stages the workdir in and out (a local path must be absolute:
            tasks run in a temporary folder).
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
        "ARTIFACT_STORE": artifact_store,
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

Every task runs `flywheel --config CONFIG step NAME --artifact-store ARTIFACT_STORE --logical-date
{{{{ ds }}}}` in a temporary folder of its own, staged in from the artifact store and back out: the
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
        f'out="$("$flywheel" --config {shlex.quote(CONFIG)} step {step} '
        f"--artifact-store {shlex.quote(ARTIFACT_STORE)} "
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
    max_active_runs=1,  # the artifact store is not locked: one run at a time
    default_args={
        "owner": "flywheel",
        "retries": RETRIES,
        "on_failure_callback": on_failure,
        "on_success_callback": on_success,
        "on_retry_callback": on_retry,
    },
    tags=["flywheel", USE_CASE],
) as dag:'''
