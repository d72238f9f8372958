"""The compiled Airflow DAG on a real Apache Airflow (tests/airflow_env.py): the credit use case's
pipeline, with seed 003's templated extraction, runs through `airflow dags test` for three consecutive
logical dates on a small credit lake. Every task sees its run's `{{ ds }}`; the extraction keeps one
table window per date, each holding the records of its own (ds − lookback, ds]; a second `dags test`
of the third date replaces that date's window rather than adding to it; and the task callbacks POST
to the alert webhook — on success, and with the task and the date on retry and failure.

The first run on a machine installs Airflow into its own virtualenv (about 25 s); the three runs, the
re-run (to ``extract``) and the failing run take about 3 minutes (3½ in all on a clean machine).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from flywheel.config import default_config
from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.pipeline.dag import pipeline_for
from flywheel.usecases.credit import USE_CASE as CREDIT
from flywheel.workdir import Workdir
from tests.airflow_env import AirflowHome
from tests.integration.test_credit import SMALL

pytestmark = pytest.mark.slow

DAG_ID = "flywheel_credit_training"
STEPS = [step.name for step in pipeline_for(CREDIT)]
TARGET = CREDIT.extraction.target
# the lake's records end 2024-09-01: every date's window is full
DATES = ("2024-08-18", "2024-08-19", "2024-08-20")
FAILING_DATE = "2024-08-21"
LOOKBACK_MONTHS = 6
# tests/integration/test_credit.py's small credit run (600 customers × 8 months, a 2-point grid), daily
SMALL_CREDIT = {
    **SMALL,
    "data.extract.lookback_months": LOOKBACK_MONTHS,
    "pipeline.schedule": "@daily",
    "pipeline.retries": 1,
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

    def dags_test(self, logical_date: str, *options: str) -> subprocess.CompletedProcess[str]:
        return self.airflow.run("dags", "test", DAG_ID, logical_date, *options, check=False, env=self.env)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Deployment:
    """A generated credit lake, its config (alerts to ``webhook``), and the DAG compiled by the CLI
    into the DAGs folder of a fresh Airflow home."""
    folder = tmp_path_factory.mktemp("airflow-deployment")
    # retries wait Airflow's default_task_retry_delay (5 minutes by default): a second here
    airflow = AirflowHome.create(folder / "airflow", settings={"core.default_task_retry_delay": "1"})
    config = default_config("credit", **SMALL_CREDIT, **{"alerts.webhook_url": webhook.url})
    config_path = folder / "credit.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    workdir = Workdir.at(folder / "wd")
    ops.generate(config, workdir)
    dag_file = airflow.dags / "flywheel_credit.py"
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
    )
    assert compiled.returncode == 0, compiled.stderr
    # the tasks call the compiled-in flywheel and webhook, whatever this shell exports
    return Deployment(
        airflow, config_path, workdir, dag_file, {"FLYWHEEL_BIN": "", "FLYWHEEL_ALERT_WEBHOOK_URL": ""}
    )


@dataclass
class Runs:
    """`airflow dags test` runs and what they left, read right after them (later runs change it)."""

    done: list[subprocess.CompletedProcess[str]]
    runs: list[tuple[str, str, str]]  # (logical date, run id, state) of every DAG run in Airflow
    outputs: dict[tuple[str, str], dict[str, str]]  # (logical date, task) → the step's outputs
    window: pd.DataFrame  # the extraction's target table


def _after(deployment: Deployment, done: list[subprocess.CompletedProcess[str]]) -> Runs:
    return Runs(done, _runs(deployment), _step_outputs(deployment), _window(deployment.workdir))


@pytest.fixture(scope="module")
def three_runs(deployment: Deployment) -> Runs:
    return _after(deployment, [deployment.dags_test(day) for day in DATES])


@pytest.fixture(scope="module")
def rerun(deployment: Deployment, three_runs: Runs) -> Runs:
    """`airflow dags test` again for the third date. Airflow allows it: it clears the date's task
    instances, deletes its DAG run and runs a new one. The tasks after ``extract`` are marked successful
    instead of run (``--mark-success-pattern``): training again is not what this run checks, and would
    add a minute."""
    after_extract = "|".join(STEPS[STEPS.index("extract") + 1 :])
    return _after(deployment, [deployment.dags_test(DATES[-1], "--mark-success-pattern", after_extract)])


@pytest.fixture(scope="module")
def failing_run(deployment: Deployment, rerun: Runs) -> Iterator[Runs]:
    """The day after the three dates with the extraction source down: the config points
    ``data.extract`` at a MySQL server on a local port nothing listens on, so ``extract`` fails (and
    fails fast: the connection is refused). The config is restored afterwards."""
    kept = deployment.config.read_text()
    settings = yaml.safe_load(kept)
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        settings["data"]["extract"].update(
            source="mysql", url=f"mysql+pymysql://flywheel@127.0.0.1:{port}/credit"
        )
        deployment.config.write_text(yaml.safe_dump(settings))
        try:
            yield _after(deployment, [deployment.dags_test(FAILING_DATE)])
        finally:
            deployment.config.write_text(kept)


def _runs(deployment: Deployment) -> list[tuple[str, str, str]]:
    """(logical date, run id, state) of the DAG's runs, as Airflow reports them."""
    listed = deployment.airflow.run("dags", "list-runs", DAG_ID, "--output", "json")
    # Airflow may print warnings first (graphviz is missing): the runs are the line holding the list
    rows = json.loads(next(line for line in listed.stdout.splitlines() if line.startswith("[{")))
    return sorted((row["logical_date"][:10], row["run_id"], row["state"]) for row in rows)


def _step_outputs(deployment: Deployment) -> dict[tuple[str, str], dict[str, str]]:
    """(logical date, task) → the step's outputs, from the XComs in Airflow's metadata database."""
    with sqlite3.connect(deployment.airflow.database) as con:
        rows = con.execute(
            "SELECT r.logical_date, x.task_id, x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id "
            "WHERE x.dag_id = ? AND x.key = 'return_value'",
            (DAG_ID,),
        ).fetchall()
    return {(day[:10], task): json.loads(json.loads(value)) for day, task, value in rows}


def _window(workdir: Workdir) -> pd.DataFrame:
    """The extraction's target table in the workdir, a row per (base_dt, id) in that order."""
    with duckdb.connect(str(workdir.extract_db), read_only=True) as con:
        return con.execute(f"SELECT * FROM {TARGET} ORDER BY base_dt, id").df()


def _records_in_window(workdir: Workdir, day: str) -> set[str]:
    """The ids of the lake's credit records dated in (day − lookback, day], read with pyarrow and
    filtered with pandas: not the template's SQL."""
    records = Lake(workdir, CREDIT).read("credit_records").select(["id", "record_date"]).to_pandas()
    dated = pd.to_datetime(records["record_date"], utc=True).dt.tz_localize(None).dt.normalize()
    ds = pd.Timestamp(day)
    return set(records["id"][(dated > ds - pd.DateOffset(months=LOOKBACK_MONTHS)) & (dated <= ds)])


def _rows_of(window: pd.DataFrame, day: str) -> pd.DataFrame:
    rows = window[pd.to_datetime(window["base_dt"]) == pd.Timestamp(day)]
    return rows.reset_index(drop=True)


def test_the_compiled_dag_calls_this_flywheel_with_absolute_paths(deployment: Deployment) -> None:
    source = deployment.dag_file.read_text()
    assert f'FLYWHEEL = "{Path(sys.executable).parent / "flywheel"}"' in source
    assert f'CONFIG = "{deployment.config}"' in source
    assert f'ARTIFACT_STORE = "{deployment.workdir.root}"' in source  # the tasks stage from the workdir
    assert "RETRIES = 1" in source and 'SCHEDULE = "@daily"' in source
    assert "import flywheel" not in source and "from flywheel" not in source
    # seed 003's extraction sits between features and data_load
    assert 'extract_task = flywheel_task("extract", ["features"])' in source
    assert "features_task >> extract_task" in source and "extract_task >> data_load_task" in source


def test_three_consecutive_logical_dates_succeed(three_runs: Runs) -> None:
    for day, done in zip(DATES, three_runs.done, strict=True):
        assert done.returncode == 0, f"{day}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert [(day, state) for day, _, state in three_runs.runs] == [(day, "success") for day in DATES]


def test_every_task_saw_its_logical_date(three_runs: Runs) -> None:
    """Each step returns the date it was given with its outputs; downstream steps got upstream outputs
    of the same run (the dataset ``train`` fitted is the one ``data_load`` built that day from the
    records ``extract`` chose)."""
    outputs = three_runs.outputs
    for day in DATES:
        for step in STEPS:
            assert outputs[day, step]["_step"] == step
            assert outputs[day, step]["_logical_date"] == day, (day, step)
        assert outputs[day, "extract"]["logical_date"] == day
        assert outputs[day, "extract"]["labels"].endswith(f"labels-{day}.parquet")
        assert outputs[day, "publish"]["champion"]
    assert len({outputs[day, "train"]["run_id"] for day in DATES}) == len(DATES)
    assert len({outputs[day, "data_load"]["dataset"] for day in DATES}) == len(DATES)


def test_the_extraction_keeps_one_window_per_date(deployment: Deployment, three_runs: Runs) -> None:
    """After the three runs the target table holds exactly their three dates, each with the records
    of its own (ds − 6 months, ds] as the lake has them, once; the window grew by one date a run."""
    window = three_runs.window
    assert sorted({str(day)[:10] for day in window["base_dt"]}) == list(DATES)
    chosen = {}
    for i, day in enumerate(DATES):
        rows = _rows_of(window, day)
        expected = _records_in_window(deployment.workdir, day)
        assert len(rows) == len(expected) > 1000, day
        assert set(rows["id"]) == expected, day
        extracted = three_runs.outputs[day, "extract"]
        assert int(extracted["rows"]) == int(extracted["label_rows"]) == len(expected)
        assert (extracted["window_dates"], extracted["rows_deleted"]) == (str(i + 1), "0")
        chosen[day] = expected
    # consecutive windows are not the same records: each date ran its own extraction
    assert chosen[DATES[0]] != chosen[DATES[1]] != chosen[DATES[2]]


def test_a_second_run_of_a_date_replaces_its_window(three_runs: Runs, rerun: Runs) -> None:
    """Airflow accepts a second `dags test` for a date it has run: it replaces that DAG run with a new
    one, whose ``extract`` deletes the date's rows and inserts them again: the table holds the same
    three dates with the same rows, none twice."""
    (done,) = rerun.done
    assert done.returncode == 0, f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
    before = {day: run_id for day, run_id, _ in three_runs.runs}
    assert [(day, state) for day, _, state in rerun.runs] == [(day, "success") for day in DATES]
    after = {day: run_id for day, run_id, _ in rerun.runs}
    assert after[DATES[-1]] != before[DATES[-1]] and after[DATES[0]] == before[DATES[0]]
    first, again = three_runs.outputs[DATES[-1], "extract"], rerun.outputs[DATES[-1], "extract"]
    assert again["logical_date"] == DATES[-1] and again["window_dates"] == "3"
    assert again["rows"] == again["rows_deleted"] == first["rows"]
    assert not rerun.window.duplicated(["base_dt", "id"]).any()
    assert sorted({str(day)[:10] for day in rerun.window["base_dt"]}) == list(DATES)
    for day in DATES:
        pd.testing.assert_frame_equal(_rows_of(rerun.window, day), _rows_of(three_runs.window, day))


def test_every_task_posts_its_success(webhook: Webhook, three_runs: Runs) -> None:
    posted = {(d["logical_date"], d["task_id"]) for d in webhook.details("success")}
    assert {(day, step) for day, step in posted if day in DATES} == {
        (day, step) for day in DATES for step in STEPS
    }
    sample = webhook.details("success")[0]
    assert sample["dag_id"] == DAG_ID and sample["try_number"] == 1 and sample["log_url"]
    assert webhook.received[0]["text"].startswith("[flywheel credit]")


def test_a_failing_task_is_retried_then_posts_its_failure(webhook: Webhook, failing_run: Runs) -> None:
    """``extract`` cannot reach its source: the task is retried once (pipeline.retries) and its failure
    reaches the webhook with the task and the logical date; the steps after it never run, and the
    window keeps the three dates it had."""
    (done,) = failing_run.done
    assert done.returncode != 0
    assert dict((day, state) for day, _, state in failing_run.runs)[FAILING_DATE] == "failed"
    failed = webhook.details("failed")
    assert [(d["task_id"], d["logical_date"], d["try_number"]) for d in failed] == [
        ("extract", FAILING_DATE, 2)
    ]
    assert "exit code 1" in failed[0]["error"]
    retried = webhook.details("up_for_retry")
    assert [(d["task_id"], d["logical_date"], d["try_number"]) for d in retried] == [
        ("extract", FAILING_DATE, 1)
    ]
    posted = {d["task_id"] for d in webhook.details("success") if d["logical_date"] == FAILING_DATE}
    assert posted == {"validate", "features"}
    assert (FAILING_DATE, "data_load") not in failing_run.outputs
    assert sorted({str(day)[:10] for day in failing_run.window["base_dt"]}) == list(DATES)
