"""The service's lifecycle on a real uvicorn: a container-style start on an empty workdir waits for
the pipeline instead of failing, and SIGTERM under load drains in-flight requests, logs every
acknowledged prediction and exits 0 (one process, and a supervisor with two workers)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import mlflow
import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.features import online, snapshots
from flywheel.registry import registry
from flywheel.registry.versions import load_version
from flywheel.serving.predlog import read_log
from flywheel.serving.routes import NOT_MATERIALIZED
from flywheel.training.train import log_model
from flywheel.workdir import Workdir
from tests.servers import call, free_port, service, write_config


def customers(workdir: Workdir, n: int) -> list[int]:
    return pq.read_table(snapshots.snapshot_files(workdir)[-1]).column("customer_id").to_pylist()[:n]


def wait_for(check, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def reasons(base: str) -> list[str]:
    return call(base, "GET", "/ready")[1].get("reasons", [])


def answers(base: str, path: str, status: int) -> bool:
    try:
        return call(base, "GET", path)[0] == status
    except OSError:
        return False


def test_an_empty_workdir_is_served_until_the_pipeline_fills_it(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """A container starts with nothing but the config and FLYWHEEL_WORKDIR naming its empty volume:
    /ready named the missing champion twice and not the missing online store, which was never
    opened afterwards, so the service never became ready; it now says what is missing and becomes
    ready once the online store and a champion appear (the poller retries both)."""
    config = apply_overrides(serving_config, {"serving.poll_seconds": 0.5})
    empty = Workdir.at(tmp_path / "volume")
    empty.root.mkdir()  # the image's mount point
    port, base = free_port(), ""
    env = {
        **os.environ,
        "FLYWHEEL_CONFIG": str(write_config(config, tmp_path)),
        "FLYWHEEL_WORKDIR": str(empty.root),
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "flywheel", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or answers(base, "/health", 200), "no /health")
        assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        wait_for(lambda: (empty.root / "mlflow.db").exists(), "the first champion check never ran")
        status, body = call(base, "GET", "/ready")
        assert status == 503 and body["status"] == "not ready"
        assert f"no {config.registry.model_name}@champion to serve yet" in body["reasons"]
        assert any("online store not set up yet" in reason for reason in body["reasons"]), body
        status, body = call(base, "POST", "/v1/predict", {"customer_id": customers(served_copy, 1)[0]})
        assert status == 503 and "champion" in body["detail"]
        assert str(empty.root) not in str(body) + str(call(base, "GET", "/ready")[1])
        assert call(base, "GET", "/metrics")[0] == 200

        # the pipeline fills the workdir: the feature repo applied, then materialized, then a champion
        for folder in ("features", "lake"):
            shutil.copytree(served_copy.root / folder, empty.root / folder)
        watermark = online.watermark_path(served_copy).name
        shutil.copytree(
            served_copy.feature_repo, empty.feature_repo, ignore=shutil.ignore_patterns(watermark)
        )
        wait_for(lambda: NOT_MATERIALIZED in reasons(base), "the online store was never opened")
        shutil.copy(online.watermark_path(served_copy), online.watermark_path(empty))
        wait_for(lambda: not any("online store" in r for r in reasons(base)), "never materialized")
        model = load_version(config, served_copy, "1").model
        example = pq.read_table(snapshots.snapshot_files(served_copy)[-1]).to_pandas()[model.features]
        client = registry.mlflow_client(config, empty)  # the store the service created
        with mlflow.start_run():
            uri = log_model(model, example)
        version = str(mlflow.register_model(uri, config.registry.model_name).version)
        registry.move_alias(client, config.registry.model_name, registry.CHAMPION, version, "test")
        wait_for(lambda: answers(base, "/ready", 200), "the champion was never picked up")
        status, body = call(base, "POST", "/v1/predict", {"customer_id": customers(served_copy, 1)[0]})
        assert status == 200 and body["model_version"] == version
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
    assert process.returncode == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_logs_every_acknowledged_prediction(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path, workers: int
) -> None:
    """Four clients keep predicting while the service gets SIGTERM: every prediction it answered 200
    is in the prediction log afterwards, and the process exits 0 (uvicorn re-raised SIGTERM after its
    graceful stop, so a single-process service ended by the signal, -15)."""
    config = apply_overrides(serving_config, {"serving.workers": workers})
    ids = customers(served_copy, 400)
    acknowledged: list[str] = []
    stop_sent = threading.Event()
    with service(served_copy, config, tmp_path, log=tmp_path / "server.log") as (base, process):
        for _ in range(10 * workers):
            assert call(base, "GET", "/ready")[0] == 200
        deadline = time.monotonic() + 4

        def client(k: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as http:
                i = k
                while time.monotonic() < deadline:
                    try:
                        response = http.post("/v1/predict", json={"customer_id": ids[i % len(ids)]})
                    except httpx.HTTPError:  # refused or closed while stopping: never acknowledged
                        if stop_sent.is_set():
                            return
                        raise
                    if response.status_code == 200:
                        acknowledged.append(response.json()["request_id"])
                    i += 4

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        stop_sent.set()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join()
        assert process.wait(timeout=60) == 0
    logged = {row["request_id"] for row in read_log(served_copy.prediction_log)}
    assert len(acknowledged) > 50
    assert set(acknowledged) <= logged, f"{len(set(acknowledged) - logged)} acknowledged but not logged"
    assert "Traceback" not in (tmp_path / "server.log").read_text()
