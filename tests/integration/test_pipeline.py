"""The pipeline: wiring, parameters, a full local run, failure, resume, SIGKILL, KFP and Airflow."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import time
import types
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.errors import ConfigError, FlywheelError
from flywheel.pipeline import runs
from flywheel.pipeline.compile import airflow_dag, compile_kfp
from flywheel.pipeline.dag import PIPELINE, STEPS
from flywheel.pipeline.runner import apply_params, run_pipeline
from flywheel.registry import registry
from flywheel.training.train import read_evaluation
from flywheel.workdir import Workdir
from tests.servers import flywheel_command

EDGES = {
    ("validate", "features"),
    ("features", "data_load"),
    ("data_load", "train"),
    ("train", "eval"),
    ("data_load", "eval"),
    ("eval", "model_upload"),
    ("train", "model_upload"),
    ("data_load", "model_upload"),
    ("model_upload", "promote"),
    ("eval", "promote"),
    ("data_load", "promote"),
    ("promote", "publish"),
}


@pytest.fixture
def pipeline_config(training_config: FlywheelConfig) -> FlywheelConfig:
    return apply_overrides(training_config, {"training.tuning.method": "none"})


@pytest.fixture
def workdir(featured_workdir: Workdir, tmp_path: Path) -> Workdir:
    shutil.copytree(featured_workdir.root, tmp_path / "wd")
    return Workdir.at(tmp_path / "wd")


def test_wiring_follows_the_seed_dag() -> None:
    names = [step.name for step in PIPELINE]
    assert names == [
        "validate",
        "features",
        "data_load",
        "train",
        "eval",
        "model_upload",
        "promote",
        "publish",
    ]
    assert {(up, step.name) for step in PIPELINE for up in step.upstream} == EDGES
    for step in PIPELINE:  # every upstream runs before the step, and every step is a step module
        assert all(names.index(up) < names.index(step.name) for up in step.upstream)
        assert step.module.__name__ == f"flywheel.pipeline.steps.{step.name}" and callable(step.run)


def test_parameters_override_the_config(pipeline_config: FlywheelConfig) -> None:
    config = apply_params(pipeline_config, {"train_ratio": 0.8, "n_estimators": 50, "model_type": "xgboost"})
    assert config.dataset.train_ratio == 0.8
    assert config.training.params["n_estimators"] == 50
    assert config.training.model_type == "xgboost"
    with pytest.raises(ConfigError, match="--param label_column: unknown or read-only"):
        apply_params(pipeline_config, {"label_column": "x"})
    with pytest.raises(ConfigError, match="--param nope"):
        apply_params(pipeline_config, {"nope": 1})


def test_a_full_run_registers_a_champion(workdir: Workdir, pipeline_config: FlywheelConfig) -> None:
    events = []
    record = run_pipeline(
        pipeline_config, workdir, on_event=lambda step, status: events.append((step, status))
    )
    assert record.status == runs.SUCCEEDED
    assert [s.status for s in record.steps] == [runs.SUCCEEDED] * len(PIPELINE)
    assert ("train", runs.RUNNING) in events
    version = record.steps[-3].outputs["version"]
    assert record.steps[-1].outputs["promoted"] == "true" and record.steps[-1].outputs["champion"] == version
    assert registry.describe(pipeline_config, workdir, version)["aliases"] == ["challenger", "champion"]
    listed = runs.Store(pipeline_config, workdir).list()
    assert listed[0].run_id == record.run_id and listed[0].params["train_ratio"] == "0.7"
    # the gate decided on eval's metrics, measured at the threshold train chose
    outputs = {s.name: s.outputs for s in record.steps}
    evaluated = read_evaluation(outputs["eval"]["metrics"])
    assert evaluated["threshold"] == float(outputs["train"]["threshold"])
    assert evaluated["test"]["threshold"] == evaluated["threshold"]
    tags = registry.describe(pipeline_config, workdir, version)["tags"]
    assert float(tags["gate.roc_auc.value"]) == pytest.approx(evaluated["test"]["roc_auc"], rel=1e-5)
    assert float(tags["gate.pr_auc.value"]) == pytest.approx(evaluated["test"]["pr_auc"], rel=1e-5)


def test_train_fails_before_tuning_when_artifacts_cannot_be_written(
    workdir: Workdir, pipeline_config: FlywheelConfig
) -> None:
    """Regression: an unwritable artifact store failed the run only when the model was logged, after
    the whole tuning. Now train writes to the store first (a file where the artifact folder should
    be stops even root)."""
    workdir.artifacts.write_text("not a folder")
    slow = apply_overrides(
        pipeline_config,
        {
            "training.tuning.method": "optuna",
            "training.tuning.trials": 1000,
            "training.tuning.timeout_s": 300,
        },
    )
    record = run_pipeline(slow, workdir)
    statuses = {s.name: s.status for s in record.steps}
    assert record.status == runs.FAILED and statuses["train"] == runs.FAILED
    client = registry.mlflow_client(slow, workdir)
    experiment = client.get_experiment_by_name(slow.tracking.experiment).experiment_id
    assert client.search_runs([experiment], filter_string="tags.`mlflow.parentRunId` != ''") == []
    assert "artifact" in next(s for s in record.steps if s.name == "train").error.lower()


def test_data_load_reads_the_labels_it_is_handed(
    workdir: Workdir, pipeline_config: FlywheelConfig, tmp_path: Path
) -> None:
    from flywheel.features import labels as labels_module
    from flywheel.pipeline.context import StepContext

    own = (workdir.datasets / "LATEST").read_text().strip()  # other labels must get another dataset id
    table = labels_module.read(workdir)
    dates = sorted(set(table.column("label_timestamp").to_pylist()))[:-4]  # the newest 4 dates left out
    fewer = tmp_path / "fewer_labels.parquet"
    pq.write_table(table.filter(pc.is_in(table.column("label_timestamp"), pa.array(dates))), fewer)
    outputs = STEPS["data_load"].run(StepContext(pipeline_config, workdir), labels=str(fewer))
    metadata = json.loads(Path(outputs["dataset"], "metadata.json").read_text())
    assert metadata["rows_in"] == pq.read_metadata(fewer).num_rows < table.num_rows
    assert outputs["dataset_id"] != own and (workdir.datasets / own / "test.parquet").exists()


def test_a_failed_step_skips_the_rest_and_resume_finishes(
    workdir: Workdir, pipeline_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def broken(ctx, dataset):
        seen.append(ctx.logical_date)
        raise RuntimeError("out of memory while training")

    monkeypatch.setattr(STEPS["train"].module, "run", broken)
    failed = run_pipeline(pipeline_config, workdir, logical_date=date(2024, 3, 4))
    assert seen == [date(2024, 3, 4)] and failed.params["logical_date"] == "2024-03-04"
    statuses = {s.name: s.status for s in failed.steps}
    assert failed.status == runs.FAILED
    assert statuses == {
        "validate": runs.SUCCEEDED,
        "features": runs.SUCCEEDED,
        "data_load": runs.SUCCEEDED,
        "train": runs.FAILED,
        "eval": runs.SKIPPED,
        "model_upload": runs.SKIPPED,
        "promote": runs.SKIPPED,
        "publish": runs.SKIPPED,
    }
    assert "out of memory while training" in failed.steps[3].error
    assert registry.list_versions(pipeline_config, workdir) == []  # nothing registered, no champion

    monkeypatch.undo()
    with pytest.raises(FlywheelError, match="is for logical date 2024-03-04, not 2024-03-05"):
        run_pipeline(pipeline_config, workdir, resume=failed.run_id, logical_date=date(2024, 3, 5))
    started = {s.name: s.started for s in failed.steps}
    resumed = run_pipeline(pipeline_config, workdir, resume=failed.run_id)
    assert resumed.run_id == failed.run_id and resumed.status == runs.SUCCEEDED
    assert resumed.params["logical_date"] == "2024-03-04"
    for step in resumed.steps[:3]:  # reused, not rerun
        assert step.started == started[step.name]
    assert resumed.steps[-1].outputs["promoted"] == "true"


def test_a_killed_runner_shows_as_failed_not_running(
    workdir: Workdir, pipeline_config: FlywheelConfig, tmp_path: Path
) -> None:
    store = runs.Store(pipeline_config, workdir)  # before the child, so the two never race to create it
    process = _start_cli_run(pipeline_config, workdir, tmp_path)
    run_id = _wait_for_step(store, "train")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    record = store.get(run_id)
    assert record.status == runs.FAILED and "heartbeats" in record.error
    assert {s.name: s.status for s in record.steps}["train"] == runs.FAILED
    assert registry.list_versions(pipeline_config, workdir) == []


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_a_real_ctrl_c_cancels_at_a_safe_point(
    workdir: Workdir, pipeline_config: FlywheelConfig, tmp_path: Path, delay: float
) -> None:
    """A real SIGINT to `flywheel pipeline run` while trials write to MLflow's SQLite store."""
    store = runs.Store(pipeline_config, workdir)
    process = _start_cli_run(pipeline_config, workdir, tmp_path)
    run_id = _wait_for_step(store, "train")
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) != 0
    record = store.get(run_id)
    statuses = {s.name: s.status for s in record.steps}
    assert record.status == runs.CANCELLED and "Ctrl-C" in record.error, record.error
    assert statuses["train"] == runs.CANCELLED and statuses["promote"] == runs.SKIPPED
    assert registry.list_versions(pipeline_config, workdir) == []


def test_ctrl_c_during_a_tracking_write_lets_the_write_finish(
    workdir: Workdir, pipeline_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: Ctrl-C raised KeyboardInterrupt inside whatever MLflow/SQLite write was running,
    which could leave the run store unable to record the cancellation (the run ended FAILED). Now
    the first Ctrl-C is deferred to the next safe point and the write completes."""
    import mlflow

    original, finished = mlflow.log_metric, []

    def interrupted_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of the write
        result = original(*args, **kwargs)
        finished.append(args[0])
        return result

    monkeypatch.setattr(mlflow, "log_metric", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(pipeline_config, workdir)
    assert finished, "the write was interrupted"
    record = runs.Store(pipeline_config, workdir).list(1)[0]
    assert record.status == runs.CANCELLED and "Ctrl-C" in record.error
    assert {s.name: s.status for s in record.steps}["train"] == runs.CANCELLED
    assert registry.champion_version(pipeline_config, workdir) is None


def test_kfp_compile_has_the_dag(tmp_path: Path, pipeline_config: FlywheelConfig) -> None:
    """The compiled YAML: the DAG's edges, the image, a logical_date parameter, every task staging from
    the artifact store (no workdir), and the config carried without its credentials."""
    config = apply_overrides(
        pipeline_config, {"serving.admin_token": "s3cret-token", "alerts.webhook_url": "http://hook/x"}
    )
    path = compile_kfp(tmp_path / "p.yaml", "registry.example/flywheel:1", config, "s3://bucket/flywheel")
    spec = yaml.safe_load(path.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    name_of = {key: task["taskInfo"]["name"] for key, task in tasks.items()}
    edges = {
        (name_of[dep], name_of[key]) for key, task in tasks.items() for dep in task.get("dependentTasks", [])
    }
    assert set(name_of.values()) == set(STEPS) and edges == EDGES
    assert "logical_date" in spec["root"]["inputDefinitions"]["parameters"]
    executor = next(iter(spec["deploymentSpec"]["executors"].values()))
    assert executor["container"]["image"] == "registry.example/flywheel:1"
    assert "--artifact-store" in json.dumps(executor["container"])
    assert "--workdir" not in json.dumps(executor["container"])
    parameters = tasks[next(k for k, v in name_of.items() if v == "train")]["inputs"]["parameters"]
    assert parameters["artifact_store"]["runtimeValue"]["constant"] == "s3://bucket/flywheel"
    carried = yaml.safe_load(parameters["config_yaml"]["runtimeValue"]["constant"])
    assert carried["training"] == config.model_dump(mode="json")["training"]
    assert "s3cret-token" not in path.read_text() and "http://hook/x" not in path.read_text()


def test_airflow_dag_defines_the_tasks_and_edges() -> None:
    """The DAG file's structure and what it compiles in; tests/integration/test_airflow.py runs it."""
    source = airflow_dag(
        "/shared/wd", "/shared/churn.yaml", "@weekly", retries=3, name="churn", flywheel="/opt/fw/flywheel"
    )
    tree = ast.parse(source)
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "flywheel_task"
    ]
    pulls = {c.args[0].value: set(ast.literal_eval(c.args[1]) if len(c.args) > 1 else ()) for c in calls}
    assert pulls == {step.name: set(step.upstream) for step in PIPELINE}
    shifts = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift)]
    edges = {(n.left.id.removesuffix("_task"), n.right.id.removesuffix("_task")) for n in shifts}
    assert edges == EDGES
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id.isupper()
    }
    assert constants == {
        "USE_CASE": "churn",
        "STEPS": "validate → features → data_load → train → eval → model_upload → promote → publish",
        "DAG_ID": "flywheel_churn_training",
        "SCHEDULE": "@weekly",
        "RETRIES": 3,
        "FLYWHEEL": "/opt/fw/flywheel",
        "CONFIG": "/shared/churn.yaml",
        "ARTIFACT_STORE": "/shared/wd",
        "WEBHOOK_URL": None,
        "WEBHOOK_TIMEOUT_SECONDS": 5.0,
    }
    assert '"on_failure_callback": on_failure' in source and '"on_success_callback": on_success' in source
    assert "import flywheel" not in source and "from flywheel" not in source  # Airflow lacks it


def _stub_airflow(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Airflow 3's modules as the DAG file imports them, recording every BashOperator's arguments."""
    import contextlib
    import sys

    operators: list[dict] = []

    class BashOperator:
        def __init__(self, **kwargs):
            operators.append(kwargs)

        def __rshift__(self, other):
            return other

    for name in (
        "airflow",
        "airflow.providers",
        "airflow.providers.standard",
        "airflow.providers.standard.operators",
    ):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(
        sys.modules,
        "airflow.providers.standard.operators.bash",
        types.SimpleNamespace(BashOperator=BashOperator),
    )
    monkeypatch.setitem(
        sys.modules, "airflow.sdk", types.SimpleNamespace(DAG=lambda **kw: contextlib.nullcontext(kw))
    )
    return operators


def test_an_airflow_task_runs_flywheel_step_with_its_date_and_upstream_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's bash command as Airflow renders and runs it: paths with spaces, upstream outputs with
    quotes, the logical date; only the step's last line of stdout (the XCom) is echoed last."""
    import jinja2

    workdir = tmp_path / "shared wd"
    fake = tmp_path / "bin dir" / "flywheel"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        "print('a log line on stdout')\nprint('progress', file=sys.stderr)\nprint(json.dumps(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    operators = _stub_airflow(monkeypatch)
    source = airflow_dag(str(workdir), str(tmp_path / "it's.yaml"), "@daily", flywheel=str(fake))
    exec(compile(source, "flywheel_dag.py", "exec"), {"__name__": "flywheel_dag"})
    task = next(op for op in operators if op["task_id"] == "promote")
    upstream = {
        "data_load": {"_step": "data_load", "test": "/x/test.parquet"},
        "eval": {"_step": "eval", "reason": 'it\'s "better" $HOME `id`'},
        "model_upload": {"_step": "model_upload", "version": "2"},
    }
    context = {
        "ds": "2024-03-04",
        "ti": types.SimpleNamespace(xcom_pull=lambda task_ids: json.dumps(upstream[task_ids])),
    }
    render = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string
    env = {name: render(value).render(context) for name, value in task["env"].items()}
    command = ["bash", "-c", render(task["bash_command"]).render(context)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    assert "progress" in done.stderr and done.stdout.count("\n") == 1
    argv = json.loads(done.stdout)
    assert argv[:4] == ["--config", str(tmp_path / "it's.yaml"), "step", "promote"]
    assert argv[4:6] == ["--artifact-store", str(workdir)]
    assert argv[argv.index("--logical-date") + 1] == "2024-03-04"
    given = [json.loads(argv[i + 1]) for i, arg in enumerate(argv) if arg == "--upstream-json"]
    assert given == [upstream[name] for name in STEPS["promote"].upstream]
    # the worker's $FLYWHEEL_BIN wins, and a step's "condition not met" (99) is the task's exit code
    skipping = tmp_path / "skipping-flywheel"
    skipping.write_text("#!/bin/sh\nexit 99\n")
    skipping.chmod(0o755)
    skipped = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env, "FLYWHEEL_BIN": str(skipping)}
    )
    assert skipped.returncode == 99 and task["skip_on_exit_code"] == 99 and not skipped.stdout


def test_airflow_dag_without_a_schedule_is_triggered_only() -> None:
    from flywheel.config import AlertsConfig

    alerts = AlertsConfig(webhook_url="http://127.0.0.1:9/hook", timeout_seconds=2)
    source = airflow_dag("/wd", "/c.yaml", "none", name="credit score", flywheel="flywheel", alerts=alerts)
    assert "SCHEDULE = None" in source and 'DAG_ID = "flywheel_credit_score_training"' in source
    assert 'WEBHOOK_URL = "http://127.0.0.1:9/hook"' in source and "WEBHOOK_TIMEOUT_SECONDS = 2.0" in source


def _start_cli_run(config: FlywheelConfig, workdir: Workdir, tmp_path: Path) -> subprocess.Popen:
    """A CLI pipeline run whose train step lasts long enough (many tuning trials) to be interrupted."""
    slow = apply_overrides(
        config,
        {
            "training.tuning.method": "optuna",
            "training.tuning.trials": 1000,
            "training.tuning.timeout_s": 300,
        },
    )
    return subprocess.Popen(
        flywheel_command(slow, workdir, tmp_path, "pipeline", "run"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_step(store: runs.Store, name: str) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        records = store.list(1)
        if records and any(s.name == name and s.status == runs.RUNNING for s in records[0].steps):
            return records[0].run_id
        time.sleep(0.3)
    raise AssertionError(f"the pipeline never reached {name}")


def test_ctrl_c_cancels_the_run(
    workdir: Workdir, pipeline_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches Python as KeyboardInterrupt in whatever step is running; here, in train."""

    def interrupted(ctx, dataset):
        raise KeyboardInterrupt

    monkeypatch.setattr(STEPS["train"].module, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(pipeline_config, workdir)
    record = runs.Store(pipeline_config, workdir).list(1)[0]
    statuses = {s.name: s.status for s in record.steps}
    assert record.status == runs.CANCELLED and "Ctrl-C" in record.error
    assert statuses["train"] == runs.CANCELLED and statuses["eval"] == statuses["promote"] == runs.SKIPPED
    assert registry.champion_version(pipeline_config, workdir) is None


def test_a_broken_runner_records_failed_not_succeeded(
    workdir: Workdir, pipeline_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: an error outside any step (here, in the event callback) once left the run SUCCEEDED."""

    def broken(step: str, status: str) -> None:
        if step == "data_load" and status == runs.RUNNING:
            raise SystemExit("terminal went away")

    with pytest.raises(SystemExit):
        run_pipeline(pipeline_config, workdir, on_event=broken)
    record = runs.Store(pipeline_config, workdir).list(1)[0]
    assert record.status == runs.FAILED and "runner error" in record.error


def test_step_command_is_the_orchestrator_contract(
    workdir: Workdir, pipeline_config: FlywheelConfig, tmp_path: Path
) -> None:
    base = flywheel_command(pipeline_config, workdir, tmp_path, "step")
    validated = subprocess.run(
        [*base, "validate", "--logical-date", "2024-02-29"], capture_output=True, text=True, timeout=300
    )
    assert validated.returncode == 0, validated.stderr
    outputs = json.loads(validated.stdout.strip().splitlines()[-1])
    assert outputs["_step"] == "validate" and outputs["passed"] == "true"
    assert outputs["_logical_date"] == "2024-02-29"
    misdated = subprocess.run(
        [*base, "validate", "--logical-date", "2024-2-30"], capture_output=True, text=True, timeout=300
    )
    assert misdated.returncode == 2
    assert "--logical-date" in misdated.stderr and "YYYY-MM-DD" in misdated.stderr
    skipped = subprocess.run(
        [*base, "features", "--input", "passed=false"], capture_output=True, text=True, timeout=300
    )
    assert skipped.returncode == 99 and "skipped" in skipped.stderr
    missing = subprocess.run([*base, "train"], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "needs input(s) ['dataset']" in missing.stderr


def test_monitor_shows_a_finished_run(
    workdir: Workdir, pipeline_config: FlywheelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        STEPS["data_load"].module, "run", lambda ctx, labels: (_ for _ in ()).throw(OSError("disk full"))
    )
    record = run_pipeline(pipeline_config, workdir)
    shown = subprocess.run(
        flywheel_command(pipeline_config, workdir, tmp_path, "pipeline", "monitor", "--latest", "--no-color"),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 1  # the run failed
    assert record.run_id in shown.stdout and "FAILED" in shown.stdout and "OSError: disk full" in shown.stdout


def test_a_mistyped_metrics_input_is_a_clear_error(workdir: Workdir, pipeline_config: FlywheelConfig) -> None:
    from flywheel.errors import DataError
    from flywheel.pipeline.context import StepContext

    with pytest.raises(
        DataError, match="cannot read the eval step's metrics at 'runs:/nope/eval/metrics\\.json'"
    ):
        STEPS["model_upload"].run(
            StepContext(pipeline_config, workdir),
            run_id="nope",
            model_uri="models:/nope",
            metrics="runs:/nope/eval/metrics.json",
            test=str(workdir.datasets / "x" / "test.parquet"),
        )
