"""What an outside client can send the prediction service, on a real uvicorn: every value is bounded
before it reaches the model, the log or a metric; no request switches off logging; no request gets a
500; the OpenAPI schema is what the service answers (schemathesis against the live service)."""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig
from flywheel.features import online, snapshots
from flywheel.serving.predlog import read_log
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN, call, service


def customers(served_copy: Workdir, n: int) -> list[int]:
    return pq.read_table(snapshots.snapshot_files(served_copy)[-1]).column("customer_id").to_pylist()[:n]


def logged(served_copy: Workdir) -> int:
    with sqlite3.connect(served_copy.predictions / "predictions.db") as con:
        return con.execute("SELECT count(*) FROM predictions").fetchone()[0]


def wait_logged(served_copy: Workdir, at_least: int) -> int:
    deadline = time.monotonic() + 60
    while (count := logged(served_copy)) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def features_of(base: str, customer: int) -> dict:
    return call(base, "POST", "/v1/predict?explain=features", {"customer_id": customer})[1]["features"]


def test_an_id_beyond_int64_is_rejected_and_logging_keeps_working(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 1: ``customer_id`` 2^63 on /v1/score was answered 200 and killed the log writer for good."""
    [customer] = customers(served_copy, 1)
    with service(served_copy, serving_config, tmp_path) as (base, _):
        features = features_of(base, customer)
        before = wait_logged(served_copy, 1)
        status, body = call(base, "POST", "/v1/score", {"customer_id": 2**63, "features": features})
        assert status == 422 and body["detail"][0]["field"] == "customer_id"
        for _ in range(5):
            assert call(base, "POST", "/v1/score", {"customer_id": customer, "features": features})[0] == 200
        assert wait_logged(served_copy, before + 5) == before + 5  # the log keeps growing
        assert call(base, "GET", "/ready")[0] == 200
        metrics = call(base, "GET", "/metrics")[1]
        assert "flywheel_prediction_log_up 1.0" in metrics
        assert "flywheel_prediction_log_rejected_total 0.0" in metrics


def test_a_data_time_outside_the_data_is_rejected_and_monitoring_keeps_working(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 2: ``as_of`` 9999-12-31 was logged and then stopped `monitor performance`, `retrain` and
    every loop tick with an OutOfBoundsDatetime traceback."""
    from flywheel.monitoring import performance
    from flywheel.retraining import retrain

    [customer] = customers(served_copy, 1)
    with service(served_copy, serving_config, tmp_path) as (base, _):
        features = features_of(base, customer)
        for as_of in ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "1999-01-01T00:00:00Z"):
            status, body = call(base, "POST", "/v1/score", {"features": features, "as_of": as_of})
            assert status == 422 and body["detail"][0]["field"] == "as_of", (as_of, body)
        future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        assert call(base, "POST", "/v1/score", {"features": features, "as_of": future})[0] == 422
        ok = {"customer_id": customer, "features": features, "as_of": "2024-01-01T00:00:00"}
        assert call(base, "POST", "/v1/score", ok)[0] == 200
        wait_logged(served_copy, 2)
    assert performance.evaluate(serving_config, served_copy).predictions == logged(served_copy)
    assert retrain.check(serving_config, served_copy, check_only=True).triggers


def test_a_chunked_body_past_the_limit_is_refused_by_bytes_read(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 4: the limit was checked against Content-Length only; a 20 MB chunked body got 200."""
    [customer] = customers(served_copy, 1)
    with service(served_copy, serving_config, tmp_path) as (base, _):
        features = features_of(base, customer)
        before = wait_logged(served_copy, 1)
        huge = json.dumps({"features": {**features, "country": "x" * 20_000_000}}).encode()
        connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=60)
        chunks = (huge[i : i + 65536] for i in range(0, len(huge), 65536))
        connection.request(
            "POST",
            "/v1/score",
            body=chunks,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 413 and b"max_body_bytes" in response.read()
        connection.close()
        # a long string within the body limit is still bounded by the schema
        status, body = call(base, "POST", "/v1/score", {"features": {**features, "country": "x" * 5000}})
        assert status == 422 and body["detail"][0]["field"] == "features.country"
        # nothing of the refused requests was logged: once the next good one is (the log is a FIFO),
        # it is the only new row
        good = call(base, "POST", "/v1/score", {"features": features})[1]["request_id"]
        assert wait_logged(served_copy, before + 1) >= before + 1
        deadline = time.monotonic() + 60
        while good not in {r["request_id"] for r in read_log(served_copy.predictions / "predictions.db")}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert logged(served_copy) == before + 1


def test_unknown_paths_share_one_metrics_label(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 5: the label was the raw path; 20,000 random paths grew /metrics from 10 KB to 30 MB."""
    with service(served_copy, serving_config, tmp_path) as (base, _):
        for _ in range(20):
            assert call(base, "GET", f"/{uuid.uuid4().hex}")[0] == 404
        call(base, "GET", "/metrics")  # the scrape's own series appear from the next scrape on
        size = len(call(base, "GET", "/metrics")[1])
        for _ in range(300):
            assert call(base, "GET", f"/{uuid.uuid4().hex}")[0] == 404
        metrics = call(base, "GET", "/metrics")[1]
    assert 'flywheel_requests_total{endpoint="other",status="404"} 320.0' in metrics
    assert len(metrics) < size + 100  # 300 more paths: a few digits more, no new series


def test_out_of_range_input_is_a_422_never_a_500(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 6: these were 500s, each writing its traceback to the server log twice."""
    [customer] = customers(served_copy, 1)
    log = tmp_path / "server.log"
    with service(served_copy, serving_config, tmp_path, log=log) as (base, _):
        features = features_of(base, customer)
        cases = [
            ("/v1/predict", {"customer_id": 2**63}, "customer_id"),
            ("/v1/predict", {"customer_id": -1}, "customer_id"),
            ("/v1/predict", {"customer_id": True}, "customer_id"),
            ("/v1/predict/batch", {"customer_ids": [customer, 2**63]}, "customer_ids.1"),
            ("/v1/predict/batch", {"customer_ids": [False]}, "customer_ids.0"),
            ("/v1/predict/batch", {"customer_ids": [-5]}, "customer_ids.0"),
            ("/v1/score", {"features": {**features, "country": {"a": 1}}}, "features.country"),
            ("/v1/score", {"features": {**features, "country": 7}}, "features.country"),
            ("/v1/score", {"features": {**features, "orders_30d": 10**400}}, "features.orders_30d"),
            ("/v1/score", {"features": {**features, "orders_30d": True}}, "features.orders_30d"),
        ]
        for path, body, field in cases:
            status, answer = call(base, "POST", path, body)
            assert status == 422, (path, body, answer)
            assert field in {p["field"] for p in answer["detail"]}, (path, answer)
        status, answer = call(base, "POST", "/v1/score", raw=b'{"features": {"orders_30d": 1e999}}')
        assert status == 422
    assert "Traceback" not in log.read_text()


def test_a_materialization_moves_the_ttl_cutoff_of_a_running_service(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 10: the service kept the TTL cutoff it computed at startup."""
    [customer] = customers(served_copy, 1)
    watermark = online.watermark_path(served_copy)
    with service(served_copy, serving_config, tmp_path) as (base, _):
        assert call(base, "POST", "/v1/predict", {"customer_id": customer})[0] == 200
        # what a materialization of newer snapshots does: the watermark moves past this customer's TTL
        state = json.loads(watermark.read_text())
        later = datetime.fromisoformat(state["through"]) + timedelta(
            days=serving_config.features.ttl_days + 1
        )
        watermark.write_text(json.dumps({**state, "through": later.isoformat()}))
        status, body = call(base, "POST", "/v1/predict", {"customer_id": customer})
    assert status == 404 and "not active within the feature TTL" in body["detail"]
    # one staleness rule: the CLI's `features get` says the same of this customer
    assert online.get(serving_config, served_copy, [customer])[0]["stale"]


def test_the_documented_examples_and_error_bodies_match_the_schema(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Item 12: the 422 body did not match the declared schema, the documented /v1/score example was
    itself rejected, and 400s were undocumented."""
    with service(served_copy, serving_config, tmp_path) as (base, _):
        schema = call(base, "GET", "/openapi.json")[1]
        example = schema["components"]["schemas"]["ScoreRequest"]["examples"][0]
        status, answer = call(base, "POST", "/v1/score", example)
        assert status == 200, answer
        status, answer = call(base, "POST", "/v1/predict", {"customer": 1})
    declared = schema["paths"]["/v1/predict"]["post"]["responses"]["422"]["content"]["application/json"]
    problem = schema["components"]["schemas"]["Problem"]
    assert declared["schema"]["$ref"].endswith("/InvalidBody")
    assert status == 422 and all(set(problem["required"]) <= set(p) for p in answer["detail"])


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Every operation of the live service, fuzzed from its own OpenAPI schema (bounded: tens of cases
    each, fixed seed; ~500 requests): no 5xx, every status, header and body as documented, invalid
    input rejected, admin auth enforced."""
    schemathesis = Path(sys.executable).parent / "schemathesis"
    log = tmp_path / "server.log"
    with service(served_copy, serving_config, tmp_path, log=log) as (base, _):
        run = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{base}/openapi.json",
                # every check but positive-data acceptance: as_of's bounds (the data's first snapshot,
                # now) depend on the served_copy and the clock, which JSON Schema cannot state
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--header",
                f"Authorization: Bearer {ADMIN_TOKEN}",
                "--max-examples",
                "50",
                "--seed",
                "11",
                "--phases",
                "examples,coverage,fuzzing",
                "--workers",
                "1",
                "--no-color",
                "--suppress-health-check",
                "all",
                "--generation-database",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
    assert run.returncode == 0, run.stdout[-6000:]
    assert "Traceback" not in log.read_text()
