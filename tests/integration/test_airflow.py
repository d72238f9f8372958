"""The compiled Airflow DAG on a real Apache Airflow (tests/airflow_env.py): three consecutive logical
dates run through `airflow dags test` on a small toy lake, every task sees its run's `{{ ds }}`, and
the task callbacks POST to the alert webhook — on success, and with the task and the date on failure.

The first run on a machine installs Airflow into its own virtualenv (about 30 s); the four DAG runs
take about 2½ minutes (3½ minutes in all on a clean machine).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from flywheel.config import load_config
from flywheel.data import ops
from flywheel.pipeline.dag import STEPS
from flywheel.workdir import Workdir
from tests.airflow_env import AirflowHome

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "flywheel_toy_training"
DATES = ("2024-06-03", "2024-06-04", "2024-06-05")
FAILING_DATE = "2024-06-06"
TOY = {
    "use_case": "tests.usecase_toy",
    "data": {"generator": {"machines": 120, "days": 150}},
    "training": {"tuning": {"method": "none"}},
    "registry": {"gates": {"max_p99_latency_ms": 60_000}},
    "pipeline": {"schedule": "@daily", "retries": 1},
}


class Webhook:
    """An alert webhook on 127.0.0.1 that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/flywheel"

    def details(self, state: str) -> list[dict]:
        return [m["details"] for m in self.received if m["details"]["state"] == state]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@dataclass
class Deployment:
    airflow: AirflowHome
    config: Path
    workdir: Workdir
    dag_file: Path
    env: dict[str, str]  # what the Airflow workers see

    def dags_test(self, logical_date: str) -> subprocess.CompletedProcess[str]:
        return self.airflow.run("dags", "test", DAG_ID, logical_date, check=False, env=self.env)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Deployment:
    """A generated toy lake, its config (alerts to ``webhook``), and the DAG compiled by the CLI into
    the DAGs folder of a fresh Airflow home."""
    folder = tmp_path_factory.mktemp("airflow-deployment")
    # retries wait Airflow's default_task_retry_delay (5 minutes by default): a second here
    airflow = AirflowHome.create(folder / "airflow", settings={"core.default_task_retry_delay": "1"})
    config_path = folder / "toy.yaml"
    config_path.write_text(yaml.safe_dump({**TOY, "alerts": {"webhook_url": webhook.url}}))
    workdir = Workdir.at(folder / "wd")
    ops.generate(load_config(config_path), workdir)
    dag_file = airflow.dags / "flywheel_toy.py"
    compiled = subprocess.run(
        [
            sys.executable,
            "-m",
            "flywheel",
            "--config",
            str(config_path),
            "--workdir",
            str(workdir.root),
            "pipeline",
            "compile",
            "--target",
            "airflow",
            "--output",
            str(dag_file),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert compiled.returncode == 0, compiled.stderr
    # the toy use case lives in this repository's tests package: the worker's flywheel must import it
    wrapper = folder / "flywheel-with-toy"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{Path(sys.executable).parent / "flywheel"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return Deployment(airflow, config_path, workdir, dag_file, {"FLYWHEEL_BIN": str(wrapper)})


@pytest.fixture(scope="module")
def three_runs(deployment: Deployment) -> list[subprocess.CompletedProcess[str]]:
    return [deployment.dags_test(day) for day in DATES]


def _runs(deployment: Deployment) -> dict[str, str]:
    """Logical date → state of the DAG's runs, as Airflow reports them."""
    listed = deployment.airflow.run("dags", "list-runs", DAG_ID, "--output", "json")
    # Airflow may print warnings first (graphviz is missing): the runs are the line holding the list
    rows = json.loads(next(line for line in listed.stdout.splitlines() if line.startswith("[{")))
    return {row["logical_date"][:10]: row["state"] for row in rows}


def _step_outputs(deployment: Deployment) -> dict[tuple[str, str], dict[str, str]]:
    """(logical date, task) → the step's outputs, from the XComs in Airflow's metadata database."""
    with sqlite3.connect(deployment.airflow.database) as con:
        rows = con.execute(
            "SELECT r.logical_date, x.task_id, x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id "
            "WHERE x.dag_id = ? AND x.key = 'return_value'",
            (DAG_ID,),
        ).fetchall()
    return {(day[:10], task): json.loads(json.loads(value)) for day, task, value in rows}


def test_the_compiled_dag_calls_this_flywheel_with_absolute_paths(deployment: Deployment) -> None:
    source = deployment.dag_file.read_text()
    assert f'FLYWHEEL = "{Path(sys.executable).parent / "flywheel"}"' in source
    assert f'CONFIG = "{deployment.config}"' in source and f'WORKDIR = "{deployment.workdir.root}"' in source
    assert "RETRIES = 1" in source and 'SCHEDULE = "@daily"' in source
    assert "import flywheel" not in source and "from flywheel" not in source


def test_three_consecutive_logical_dates_succeed(
    deployment: Deployment, three_runs: list[subprocess.CompletedProcess[str]]
) -> None:
    for day, done in zip(DATES, three_runs, strict=True):
        assert done.returncode == 0, f"{day}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert _runs(deployment) == dict.fromkeys(DATES, "success")


def test_every_task_saw_its_logical_date(deployment: Deployment, three_runs) -> None:
    """Each step returns the date it was given with its outputs; downstream steps got upstream outputs
    of the same run (the dataset ``train`` fitted is the one ``data_load`` built that day)."""
    outputs = _step_outputs(deployment)
    for day in DATES:
        for step in STEPS:
            assert outputs[day, step]["_step"] == step
            assert outputs[day, step]["_logical_date"] == day, (day, step)
        assert outputs[day, "publish"]["champion"]
    assert len({outputs[day, "train"]["run_id"] for day in DATES}) == len(DATES)


def test_every_task_posts_its_success(webhook: Webhook, three_runs) -> None:
    posted = {(d["logical_date"], d["task_id"]) for d in webhook.details("success")}
    assert posted == {(day, step) for day in DATES for step in STEPS}
    sample = webhook.details("success")[0]
    assert sample["dag_id"] == DAG_ID and sample["try_number"] == 1 and sample["log_url"]
    assert webhook.received[0]["text"].startswith("[flywheel toy]")


def test_a_failing_task_is_retried_then_posts_its_failure(
    deployment: Deployment, webhook: Webhook, three_runs
) -> None:
    """A config that makes ``train`` fail (LightGBM refuses one leaf): the task is retried once
    (pipeline.retries) and its failure reaches the webhook with the task and the logical date; the
    steps after it never run."""
    settings = yaml.safe_load(deployment.config.read_text())
    settings["training"]["params"] = {"num_leaves": 1}
    deployment.config.write_text(yaml.safe_dump(settings))
    done = deployment.dags_test(FAILING_DATE)
    assert done.returncode != 0
    assert _runs(deployment)[FAILING_DATE] == "failed"
    failed = webhook.details("failed")
    assert [(d["task_id"], d["logical_date"], d["try_number"]) for d in failed] == [
        ("train", FAILING_DATE, 2)
    ]
    assert "num_leaves" in failed[0]["error"] or "exit code" in failed[0]["error"]
    retried = webhook.details("up_for_retry")
    assert [(d["task_id"], d["logical_date"], d["try_number"]) for d in retried] == [
        ("train", FAILING_DATE, 1)
    ]
    posted = {d["task_id"] for d in webhook.details("success") if d["logical_date"] == FAILING_DATE}
    assert posted == {"validate", "features", "data_load"}
