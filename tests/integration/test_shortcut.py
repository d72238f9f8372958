"""The shortcut of /v1/predict's plain requests answers exactly as FastAPI's way does: the same status,
body (but for the request id), content type and log row; every other request is declined untouched
and answered by FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from flywheel.config import FlywheelConfig
from flywheel.features import snapshots
from flywheel.serving.app import create_app
from flywheel.serving.middleware import Shortcut
from flywheel.workdir import Workdir

JSON = {"content-type": "application/json"}


@contextmanager
def client(workdir: Workdir, config: FlywheelConfig) -> Iterator[TestClient]:
    with TestClient(create_app(config, workdir)) as test_client:
        yield test_client


def _requests(customer: int) -> list[tuple[str, dict[str, Any]]]:
    body = f'{{"customer_id": {customer}}}'.encode()
    return [
        ("/v1/predict", {"content": body, "headers": JSON}),
        ("/v1/predict", {"content": body, "headers": {"content-type": "application/json; charset=utf-8"}}),
        ("/v1/predict", {"content": b'{"customer_id": 1000000000}', "headers": JSON}),  # 404 by the handler
        ("/v1/predict", {"content": b'{"customer_id": "abc"}', "headers": JSON}),
        ("/v1/predict", {"content": b'{"customer": 1}', "headers": JSON}),
        ("/v1/predict", {"content": b"{not json", "headers": JSON}),
        ("/v1/predict", {"content": b"[1]", "headers": JSON}),
        ("/v1/predict", {"content": b"", "headers": JSON}),
        ("/v1/predict", {"content": body, "headers": {"content-type": "text/plain"}}),
        ("/v1/predict", {"content": body}),
        ("/v1/predict?explain=features", {"content": body, "headers": JSON}),
        ("/v1/predict?explain=nope", {"content": body, "headers": JSON}),
        ("/v1/predict", {"content": body, "headers": {**JSON, "x-flywheel-arm": "challenger"}}),
        ("/v1/predict", {"content": body, "headers": {**JSON, "X-Flywheel-Arm": "nope"}}),
        ("/v1/predict", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}),  # too deep: 400
        ("/v1/predict", {"content": body, "headers": [("content-type", "text/plain"), *JSON.items()]}),
    ]


def _answers(test_client: TestClient, customer: int) -> list[tuple[int, str | None, Any]]:
    answers = []
    for path, request in _requests(customer):
        response = test_client.post(path, **request)
        body = response.json()
        if isinstance(body, dict):
            body.pop("request_id", None)
        answers.append((response.status_code, response.headers.get("content-type"), body))
    return answers


def _counts(metrics: str) -> list[str]:
    return sorted(line for line in metrics.splitlines() if line.startswith("flywheel_requests_total{"))


def test_the_shortcut_answers_as_fastapi_does(
    served_copy: Workdir, serving_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = pq.read_table(snapshots.snapshot_files(served_copy)[-1]).column("customer_id")[0].as_py()
    taken: list[str] = []
    answer = Shortcut.__call__

    async def counted(self: Shortcut, scope: dict, *args: Any) -> bool:
        done = await answer(self, scope, *args)
        if done:
            taken.append(scope["path"])
        return done

    monkeypatch.setattr(Shortcut, "__call__", counted)
    with client(served_copy, serving_config) as test_client:
        shortcut = _answers(test_client, customer)
        metrics = test_client.get("/metrics").text
    assert taken == ["/v1/predict"] * 3  # the plain requests, the unknown entity's 404 among them

    async def declined(self: Shortcut, *args: Any) -> bool:
        return False

    monkeypatch.setattr(Shortcut, "__call__", declined)
    with client(served_copy, serving_config) as test_client:
        fastapi = _answers(test_client, customer)
        assert _counts(test_client.get("/metrics").text) == _counts(metrics)  # by route and status
    assert shortcut == fastapi
    assert [status for status, _, _ in shortcut] == [200, 200, 404, *[422] * 7, 200, 422, 409, 422, 400, 422]
    assert 'flywheel_requests_total{endpoint="/v1/predict",status="404"} 1.0' in metrics


def test_without_a_model_the_shortcut_declines(served_copy: Workdir, serving_config: FlywheelConfig) -> None:
    with client(served_copy, serving_config) as test_client:
        state = test_client.app.state.flywheel
        state.model, state.last_error = None, "version 9 failed to load"
        response = test_client.post("/v1/predict", content=b'{"customer_id": 1}', headers=JSON)
    assert response.status_code == 503 and response.json() == {"detail": "version 9 failed to load"}
