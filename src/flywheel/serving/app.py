"""The prediction service (FastAPI): online features from Feast, the champion hot-swapped.

Request path: validate the body, read features through Feast's online store, score with the
model's fast path, queue a log record — no imports, no DataFrames, no disk writes. A background task
polls the ``champion`` alias; a new version is loaded and smoke-tested off the event loop and then
swapped in by replacing one reference, so requests in flight finish on the model they started with.
"""

import asyncio
import gc
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field

from flywheel.config import FlywheelConfig
from flywheel.registry import registry
from flywheel.serving.champion import LoadedModel, load_version
from flywheel.serving.online_features import OnlineFeatures
from flywheel.serving.predlog import PredictionLog, utc_iso
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"customer_id": 42}]})
    customer_id: int = Field(..., ge=0, description="theLook users.id")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"customer_ids": [42, 43]}]})
    customer_ids: list[int] = Field(..., min_length=1)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "features": {
                        "orders_30d": 1,
                        "orders_90d": 3,
                        "days_since_last_order": 12.5,
                        "country": "Japan",
                    }
                }
            ]
        },
    )
    features: dict[str, Any] = Field(
        ..., description="Feature name → value; every model feature is required."
    )
    customer_id: int | None = Field(None, ge=0, description="Recorded in the prediction log.")
    as_of: datetime | None = Field(
        None, description="Data time of the features (for delayed-label performance)."
    )


class Prediction(BaseModel):
    customer_id: int | None
    churn_probability: float
    risk_band: str
    model_version: str
    request_id: str
    features_missing: bool = False
    features: dict[str, Any] | None = None


class BatchPrediction(BaseModel):
    predictions: list[Prediction]
    not_found: list[int]


@dataclass
class State:
    config: FlywheelConfig
    workdir: Workdir
    model: LoadedModel | None = None
    online: OnlineFeatures | None = None
    log: PredictionLog | None = None
    client: Any = None  # one MLflow client for the poller: building one costs a tracking-store setup
    last_error: str | None = None
    bands: list[tuple[float, str]] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flywheel_requests_total",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flywheel_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.probability = Histogram(
            "flywheel_churn_probability",
            "Served churn probabilities",
            registry=self.registry,
            buckets=[i / 10 for i in range(1, 11)],
        )
        self.missing = Counter(
            "flywheel_missing_features_total", "Predictions without online features", registry=self.registry
        )
        self.model_info = Gauge(
            "flywheel_model_info", "The served model version", ["version"], registry=self.registry
        )
        self.reloads = Counter("flywheel_model_reloads_total", "Champion swaps", registry=self.registry)
        self.reload_failures = Counter(
            "flywheel_model_reload_failures_total", "Versions that failed to load", registry=self.registry
        )
        self.drift_score = Gauge(
            "flywheel_drift_score",
            "Drift statistic per column in the newest drift report (churn_probability: prediction drift)",
            ["column", "test"],
            registry=self.registry,
        )
        self.drift_detected = Gauge(
            "flywheel_drift_detected", "1 when the column drifted", ["column"], registry=self.registry
        )
        self.drift_psi = Gauge(
            "flywheel_drift_psi", "PSI per numeric column", ["column"], registry=self.registry
        )
        self.dataset_drift = Gauge(
            "flywheel_dataset_drift", "1 when the newest report found dataset drift", registry=self.registry
        )
        self.drift_share = Gauge(
            "flywheel_drift_share", "Share of drifted columns in the newest report", registry=self.registry
        )
        self.drift_report: str | None = None

    def update_drift(self, reports: Path) -> None:
        """Export the newest ``reports/drift-*.json`` (names sort by time) when it changed."""
        newest = max(reports.glob("drift-*.json"), default=None)
        if newest is None or newest.name == self.drift_report:
            return
        try:
            report = json.loads(newest.read_text())
        except (OSError, ValueError):  # being written: the next scrape reads it
            return
        for gauge in (self.drift_score, self.drift_detected, self.drift_psi):
            gauge.clear()
        for column in [*report["columns"], *([report["prediction"]] if report.get("prediction") else [])]:
            self.drift_score.labels(column["column"], column["test"]).set(column["score"])
            self.drift_detected.labels(column["column"]).set(int(column["drifted"]))
            if column.get("psi") is not None:
                self.drift_psi.labels(column["column"]).set(column["psi"])
        self.dataset_drift.set(int(report["dataset_drift"]))
        self.drift_share.set(report["drifted_share"])
        self.drift_report = newest.name


def _band(state: State, probability: float) -> str:
    chosen = state.bands[0][1]
    for lowest, name in state.bands:
        if probability >= lowest:
            chosen = name
    return chosen


async def check_champion(state: State, metrics: Metrics) -> bool:
    """Load the champion if its alias moved; returns whether the served model changed."""
    loop = asyncio.get_running_loop()
    try:
        if state.client is None:
            state.client = await loop.run_in_executor(
                None, registry.mlflow_client, state.config, state.workdir
            )
        version = await loop.run_in_executor(
            None, registry.alias_version, state.client, state.config.registry.model_name, registry.CHAMPION
        )
    except Exception as error:  # the registry is unreachable: keep serving what we have
        state.last_error = f"registry unreachable: {error}"
        return False
    if version is None or (state.model is not None and version == state.model.version):
        if version is None and state.model is None:
            state.last_error = f"no {state.config.registry.model_name}@champion to serve yet"
        return False
    try:
        loaded = await loop.run_in_executor(None, load_version, state.config, state.workdir, version)
    except Exception as error:
        metrics.reload_failures.inc()
        state.last_error = f"version {version} failed to load: {error}"
        _logger.error(state.last_error)
        return False
    if state.model is not None:
        metrics.model_info.remove(state.model.version)
        metrics.reloads.inc()
    state.model, state.last_error = loaded, None  # one reference swap: in-flight requests keep the old model
    metrics.model_info.labels(loaded.version).set(1)
    _logger.info("serving %s v%s", state.config.registry.model_name, loaded.version)
    return True


def create_app(config: FlywheelConfig, workdir: Workdir) -> FastAPI:
    state = State(config, workdir)
    state.bands = sorted((lowest, name) for name, lowest in config.serving.risk_bands.items())
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.log = PredictionLog(workdir.predictions / "predictions.db", config.serving.log_flush_seconds)
        try:
            state.online = await asyncio.get_running_loop().run_in_executor(
                None, OnlineFeatures, config, workdir
            )
        except Exception as error:
            state.last_error = f"online store unavailable: {error}"
        await check_champion(state, metrics)
        # Feast, MLflow and protobuf leave millions of long-lived objects; a full collection scanning
        # them stalls every request for ~0.1 s. Freeze them out of the collector's generations.
        gc.collect()
        gc.freeze()

        async def poll() -> None:
            while True:
                await asyncio.sleep(config.serving.poll_seconds)
                await check_champion(state, metrics)

        poller = asyncio.create_task(poll())
        yield
        poller.cancel()
        state.log.close()
        gc.unfreeze()  # frozen objects are never freed; an in-process service must not keep them so

    app = FastAPI(
        title="Flywheel churn prediction",
        version="1",
        lifespan=lifespan,
        description="Churn probabilities for theLook customers from the Feast online store and the "
        "champion model.",
    )
    app.state.flywheel = state

    class Observe:
        """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs more than the whole prediction):
        rejects oversized bodies with 413, times requests, counts them by endpoint and status."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            path = scope["path"]
            length = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
            if length.isdigit() and int(length) > config.serving.max_body_bytes:
                metrics.requests.labels(path, "413").inc()
                response = JSONResponse(
                    {"detail": f"body of {int(length)} bytes exceeds {config.serving.max_body_bytes}"},
                    status_code=413,
                )
                await response(scope, receive, send)
                return
            status = [500]

            async def sending(message: dict) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            started = time.perf_counter()
            try:
                await self.app(scope, receive, sending)
            finally:
                metrics.latency.labels(path).observe(time.perf_counter() - started)
                metrics.requests.labels(path, str(status[0])).inc()

    app.add_middleware(Observe)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:  # never a stack trace
        _logger.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error; see the service log"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    async def serving_model() -> LoadedModel:  # async: a plain def dependency runs in a thread pool
        if state.model is None:
            raise HTTPException(503, state.last_error or "no model loaded")
        return state.model

    Served = Annotated[LoadedModel, Depends(serving_model)]

    def online() -> OnlineFeatures:
        if state.online is None:
            raise HTTPException(503, state.last_error or "online store unavailable")
        return state.online

    def respond(
        model: LoadedModel,
        customers: list[int | None],
        rows: list[dict[str, Any]],
        missing: list[bool],
        explain: bool,
        endpoint: str,
        as_of: list[str | None],
    ) -> list[dict[str, Any]]:
        probabilities = model.predict(rows)
        now = datetime.now(UTC).isoformat()
        out = []
        for customer, row, gone, p, when in zip(customers, rows, missing, probabilities, as_of, strict=True):
            request_id = uuid.uuid4().hex
            value = float(p)
            metrics.probability.observe(value)
            state.log.append(request_id, now, customer, model.version, value, row, endpoint, when)
            answer = {
                "customer_id": customer,
                "churn_probability": value,
                "risk_band": _band(state, value),
                "model_version": model.version,
                "request_id": request_id,
                "features_missing": gone,
            }
            if explain:
                answer["features"] = row
            if customer is None:
                del answer["customer_id"]
            out.append(answer)
        return out

    def lookup(
        ids: list[int], model: LoadedModel
    ) -> tuple[list[dict[str, Any] | None], list[bool], list[str | None]]:
        rows, times = online().read_timed(ids)
        missing = [row is None for row in rows]
        if any(missing):
            metrics.missing.inc(sum(missing))
        if config.serving.cold_start:
            rows = [row if row is not None else {} for row in rows]
        return rows, missing, times

    Explain = Annotated[
        str | None, Query(description="`features` adds the feature values used.", pattern="^features$")
    ]

    @app.post(
        "/v1/predict",
        response_model=Prediction,
        response_model_exclude_none=True,
        responses={
            404: {"description": "Unknown customer (no online features)"},
            503: {"description": "No model or online store"},
        },
    )
    async def predict(body: PredictRequest, model: Served, explain: Explain = None) -> JSONResponse:
        """Churn probability of one customer, from their online features."""
        rows, missing, times = lookup([body.customer_id], model)
        if rows[0] is None:
            raise HTTPException(
                404,
                f"customer {body.customer_id} has no online features "
                "(unknown, or not active within the feature TTL)",
            )
        return JSONResponse(
            respond(model, [body.customer_id], rows, missing, explain == "features", "predict", times)[0]
        )

    @app.post(
        "/v1/predict/batch",
        response_model=BatchPrediction,
        response_model_exclude_none=True,
        responses={413: {"description": "More ids than serving.max_batch"}},
    )
    async def predict_batch(body: BatchRequest, model: Served, explain: Explain = None) -> JSONResponse:
        """Churn probabilities of many customers in one call (unknown ones are listed in not_found)."""
        if len(body.customer_ids) > config.serving.max_batch:
            raise HTTPException(
                413, f"{len(body.customer_ids)} ids exceed the batch limit of {config.serving.max_batch}"
            )
        rows, missing, times = lookup(body.customer_ids, model)
        found = [i for i, row in enumerate(rows) if row is not None]
        predictions = (
            respond(
                model,
                [body.customer_ids[i] for i in found],
                [rows[i] for i in found],
                [missing[i] for i in found],
                explain == "features",
                "predict_batch",
                [times[i] for i in found],
            )
            if found
            else []
        )
        not_found = [c for c, row in zip(body.customer_ids, rows, strict=True) if row is None]
        return JSONResponse({"predictions": predictions, "not_found": not_found})

    @app.post("/v1/score", response_model=Prediction, response_model_exclude_none=True)
    async def score(body: ScoreRequest, model: Served) -> JSONResponse:
        """Churn probability from a full feature vector the client already holds."""
        absent = [name for name in model.features if name not in body.features]
        unknown = [name for name in body.features if name not in model.features]
        if absent or unknown:
            problems = [{"field": f"features.{n}", "message": "required by the model"} for n in absent] + [
                {"field": f"features.{n}", "message": "not a feature of the model"} for n in unknown
            ]
            raise HTTPException(422, problems)
        for name in model.model.numeric:
            value = body.features[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise HTTPException(
                    422, [{"field": f"features.{name}", "message": "expected a number or null"}]
                )
        as_of = utc_iso(body.as_of)
        answer = respond(model, [body.customer_id], [body.features], [False], False, "score", [as_of])
        return JSONResponse(answer[0])

    @app.get("/v1/model")
    async def model_info() -> dict[str, Any]:
        """The served version, when it was loaded, its features, and the registry's aliases."""
        model = await serving_model()
        return {
            "name": config.registry.model_name,
            "version": model.version,
            "aliases": ["champion"],
            "model_type": model.model.model_type,
            "loaded_at": model.loaded_at.isoformat(),
            "features": model.features,
            "last_error": state.last_error,
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"description": "Not ready, with the reason"}})
    async def ready() -> JSONResponse:
        """Ready when a model is loaded and the online store answers."""
        reasons = []
        if state.model is None:
            reasons.append(state.last_error or "no model loaded")
        try:
            online().ping()
        except HTTPException as error:
            reasons.append(error.detail)
        except Exception as error:
            reasons.append(f"online store unreachable: {error}")
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        body = {"status": "ready", "model_version": state.model.version}
        if state.last_error:
            body["warning"] = state.last_error
        return JSONResponse(body)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics, with the newest drift report's figures as gauges."""
        metrics.update_drift(workdir.reports)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        token = config.serving.admin_token
        if token is None or authorization != f"Bearer {token}":
            raise HTTPException(401, "admin endpoints need `Authorization: Bearer <serving.admin_token>`")

    @app.post("/v1/admin/reload", dependencies=[Depends(admin)], responses={401: {"description": "No token"}})
    async def reload() -> dict[str, Any]:
        """Check the champion alias now and swap in a new version if it moved."""
        changed = await check_champion(state, metrics)
        return {
            "changed": changed,
            "version": state.model.version if state.model else None,
            "last_error": state.last_error,
        }

    return app
