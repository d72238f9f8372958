"""``flywheel serve --workers 2`` on a real uvicorn: /metrics adds up every worker's requests,
latencies and log writes, whichever worker answers the scrape."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
from prometheus_client.multiprocess import MultiProcessCollector

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.features import snapshots
from flywheel.serving.multiprocess import ENV
from flywheel.serving.predlog import read_log
from flywheel.workdir import Workdir
from tests.servers import call, service

REQUESTS = 240
CLIENTS = 4


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def metrics_folder(pid: int) -> Path:
    """The ``PROMETHEUS_MULTIPROC_DIR`` that ``serve`` gave its worker processes."""
    for child in children(pid):
        for entry in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
            if entry.startswith(f"{ENV}=".encode()):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError(f"no worker of process {pid} has {ENV}")


def serving(pid: int, folder: Path) -> set[int]:
    """The workers of process ``pid`` that have loaded the champion (their served-version gauge)."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("gauge_livemax_*.db")} & set(
        children(pid)
    )


def predictions_by_worker(folder: Path) -> dict[int, float]:
    """Each worker's own count of answered predictions, from its own metrics file."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "flywheel_requests_total" and sample.labels == {
                    "endpoint": "/v1/predict",
                    "status": "200",
                }:
                    counts[int(path.stem.split("_")[1])] = sample.value
    return counts


def value(metrics: str, series: str) -> float | None:
    found = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_metrics_add_up_over_two_workers(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    config = apply_overrides(serving_config, {"serving.workers": 2})
    customers = pq.read_table(snapshots.snapshot_files(served_copy)[-1]).column("customer_id").to_pylist()
    with service(served_copy, config, tmp_path, log=tmp_path / "server.log") as (base, process):
        folder = metrics_folder(process.pid)
        deadline = time.monotonic() + 120  # both workers loaded the champion (its live gauge file)
        while len(serving(process.pid, folder)) < 2:
            assert time.monotonic() < deadline, "the second worker never loaded the champion"
            time.sleep(0.2)
        for _ in range(20):  # both answer ready
            assert call(base, "GET", "/ready")[0] == 200
        answered: list[str] = []

        def client(k: int) -> None:  # every call is a new connection (urllib), to either worker
            for customer in customers[k:REQUESTS:CLIENTS]:
                status, body = call(base, "POST", "/v1/predict", {"customer_id": customer})
                assert status == 200, body
                answered.append(body["request_id"])

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answered) == REQUESTS
        # a request is counted once its response's last byte is sent: the client may read it first
        deadline = time.monotonic() + 10
        while sum((by_worker := predictions_by_worker(folder)).values()) < REQUESTS:
            assert time.monotonic() < deadline, by_worker
            time.sleep(0.05)
        assert len([n for n in by_worker.values() if n > 0]) >= 2, by_worker  # both took a share
        assert sum(by_worker.values()) == REQUESTS, by_worker

        deadline = time.monotonic() + 60  # both writers flushed
        while value(call(base, "GET", "/metrics")[1], "flywheel_prediction_log_written_total") != REQUESTS:
            assert time.monotonic() < deadline, "the log writers never reported every prediction"
            time.sleep(0.2)
        for _ in range(10):  # fresh connections: whichever worker answers, the same totals
            metrics = call(base, "GET", "/metrics")[1]
            assert value(metrics, 'flywheel_requests_total{endpoint="/v1/predict",status="200"}') == REQUESTS
            assert value(metrics, 'flywheel_request_seconds_count{endpoint="/v1/predict"}') == REQUESTS
            assert value(metrics, "flywheel_predicted_probability_count") == REQUESTS
            assert value(metrics, "flywheel_prediction_log_written_total") == REQUESTS
            assert value(metrics, "flywheel_prediction_log_up") == 1
            assert value(metrics, 'flywheel_model_info{version="1"}') == 1
            assert value(metrics, 'flywheel_performance_threshold{metric="roc_auc"}') == 0.75
    assert process.returncode == 0
    assert not folder.exists()  # the service's own metrics folder goes with it
    logged = read_log(served_copy.prediction_log)
    assert len(logged) == REQUESTS and {row["request_id"] for row in logged} == set(answered)
