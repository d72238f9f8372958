"""The prediction cache in the service: a repeated entity is answered from the cache (still with its
own request id and log row), and a new materialization or a champion swap never returns a stale
score; with Redis, replicas share it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.features import online, snapshots
from flywheel.registry import registry
from flywheel.serving.app import create_app
from flywheel.serving.predlog import read_log
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN, redis_server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _customers(workdir: Workdir, n: int) -> list[int]:
    return pq.read_table(snapshots.snapshot_files(workdir)[-1]).column("customer_id").to_pylist()[:n]


def _answer(client: TestClient, customer: int) -> dict:
    response = client.post("/v1/predict", json={"customer_id": customer})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_materialization_or_a_champion_swap_never_returns_a_cached_score(
    served_copy: Workdir, serving_config: FlywheelConfig, trained
) -> None:
    customers = _customers(served_copy, 5)
    with TestClient(create_app(serving_config, served_copy)) as client:
        cache = client.app.state.flywheel.cache
        first = [_answer(client, c) for c in customers]
        again = [_answer(client, c) for c in customers]
        batch = client.post("/v1/predict/batch", json={"customer_ids": customers}).json()["predictions"]
        assert (cache.hits, cache.misses) == (10, 5)
        for a, b in zip(first, again, strict=True):
            assert b["churn_probability"] == a["churn_probability"] and b["request_id"] != a["request_id"]
        assert [p["churn_probability"] for p in batch] == [a["churn_probability"] for a in first]
        online.materialize(serving_config, served_copy)  # rows rewritten: new values, a new generation
        [_answer(client, c) for c in customers]
        assert (cache.hits, cache.misses) == (10, 10)
        _, result = trained
        registration = registry.register(serving_config, served_copy, result.run_id, result.model_uri)
        registry.promote(serving_config, served_copy, registration.version, force=True)
        assert client.post("/v1/admin/reload", headers=ADMIN).json()["changed"]
        swapped = [_answer(client, c) for c in customers]
        assert {a["model_version"] for a in swapped} == {registration.version}
        assert (cache.hits, cache.misses) == (10, 15)
    logged = read_log(served_copy.predictions, columns=("request_id",))
    answered = {a["request_id"] for a in first + again + batch + swapped}
    assert answered <= {row["request_id"] for row in logged}  # a cached answer is logged as any other


def test_replicas_share_a_redis_cache(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    pytest.importorskip("redis")
    customers = _customers(served_copy, 4)
    with redis_server(tmp_path) as address:
        config = apply_overrides(
            serving_config,
            {"serving.cache.backend": "redis", "serving.cache.redis_url": f"redis://{address}/0"},
        )
        with (
            TestClient(create_app(config, served_copy)) as one,
            TestClient(create_app(config, served_copy)) as two,
        ):
            first = [_answer(one, c) for c in customers]
            second = [_answer(two, c) for c in customers]
            assert two.app.state.flywheel.cache.hits == len(customers)
            assert [a["churn_probability"] for a in second] == [a["churn_probability"] for a in first]
