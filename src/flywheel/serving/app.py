"""The prediction service (FastAPI): online features from Feast, the champion hot-swapped.

Request path: validate the body, read features through Feast's online store, score with the
model's fast path, queue a log record — no imports, no DataFrames, no disk writes; a plain
``/v1/predict`` goes to its handler by the middleware's ``Shortcut``, past FastAPI's routing and
dependency resolution (the rest of the request's cost once the read and the model were made fast).
A background task polls the ``champion`` alias; a new version is loaded and smoke-tested off the
event loop and then swapped in by replacing one reference, so requests in flight finish on the model
they started with.

This module builds the app and runs its lifecycle; the state, the online store's opening and the
champion check are in ``state``, the endpoints in ``routes``, the bodies in ``schemas``, the
middleware in ``middleware``, the metrics in ``metrics`` (``reports``, ``multiprocess``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from flywheel.config import FlywheelConfig
from flywheel.dashboard.routes import router as dashboard_router
from flywheel.monitoring.alerts import alert
from flywheel.serving import routes
from flywheel.serving.metrics import Metrics
from flywheel.serving.middleware import Observe, Shortcut
from flywheel.serving.predlog import PredictionLog
from flywheel.serving.schemas import NUMBER_SCHEMA, STRING_SCHEMA, bodies
from flywheel.serving.state import State, data_start, refresh
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


def create_app(config: FlywheelConfig, workdir: Workdir) -> FastAPI:
    metrics = Metrics(
        log=lambda: state.log,
        performance_metric=config.retrain.performance_metric,
        performance_bound=config.retrain.performance_bound,
    )
    state = State(config, workdir, metrics, bodies=bodies(config.spec))
    state.bands = sorted((lowest, name) for name, lowest in config.serving.risk_bands.items())

    def log_failed(message: str) -> None:  # called from the writer thread, once per failure streak
        alert(config, workdir, "prediction_log", f"the prediction log cannot be written: {message}")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        figures = metrics.log_figures
        state.log = PredictionLog(
            workdir.prediction_log_named(config.serving.log_name),
            config.serving.log_flush_seconds,
            on_error=log_failed,
            observe=figures.observe if figures is not None else None,
        )
        state.data_start = data_start(workdir)
        # an empty workdir (a container started before the pipeline ran) is no error: the service
        # answers /health, says in /ready what is missing, and the poller picks it up once it exists
        await refresh(state)
        _freeze()

        async def poll() -> None:
            while True:
                await asyncio.sleep(config.serving.poll_seconds)
                waiting = state.online is None or state.model is None
                try:
                    await refresh(state)
                except Exception:  # a bug must not end the polling: no more swaps, rollouts or guards
                    _logger.exception("refreshing the served model and rollout failed; retried next poll")
                    continue
                if waiting and state.online is not None and state.model is not None:
                    _freeze()  # what startup would have frozen, had everything been there

        poller = asyncio.create_task(poll())
        yield
        poller.cancel()
        state.log.close()  # after uvicorn's graceful stop: every answered request was queued
        metrics.stopped()
        gc.unfreeze()  # frozen objects are never freed; an in-process service must not keep them so

    api = config.spec.api
    app = FastAPI(title=api.title, version="1", lifespan=lifespan, description=api.description)
    router = routes.router_for(config.spec)
    app.state.flywheel = state
    predict = next(r for r in router.routes if r.path == "/v1/predict")
    app.add_middleware(
        Observe,
        metrics=state.metrics,
        max_body_bytes=config.serving.max_body_bytes,
        paths=frozenset(route.path for route in router.routes),
        shortcut=Shortcut(app, predict, routes.predict, state, routes.serving_model),
    )
    app.add_exception_handler(RequestValidationError, _invalid)
    # the routes themselves, not an included router: FastAPI matches an included router's routes
    # through a layer of its own on every request (8 µs); the router has no prefix or settings
    app.router.routes.extend(router.routes)
    app.router.routes.extend(dashboard_router.routes)  # /dashboard: after the API's routes
    app.openapi = lambda: _openapi(app, state)
    return app


def _freeze() -> None:
    """Feast, MLflow and protobuf leave millions of long-lived objects; a full collection scanning
    them stalls every request for ~0.1 s. Freeze them out of the collector's generations."""
    gc.collect()
    gc.freeze()


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [
        {
            "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
            "message": e["msg"].removeprefix("Value error, "),
            "type": e["type"],
        }
        for e in error.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


def _openapi(app: FastAPI, state: State) -> dict[str, Any]:
    """The schema; with a model loaded, ``/v1/score``'s feature vector is the served model's own:
    each feature required, typed (number or string, or null) and nothing else, with an example the
    model accepts."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    if state.model is None:
        return schema
    model = state.model.model
    categorical = set(model.categorical)
    score = schema["components"]["schemas"]["ScoreRequest"]
    score["properties"]["features"] = {
        "type": "object",
        "description": score["properties"]["features"].get("description", ""),
        "properties": {
            name: {"anyOf": [STRING_SCHEMA if name in categorical else NUMBER_SCHEMA, {"type": "null"}]}
            for name in model.features
        },
        "required": list(model.features),
        "additionalProperties": False,
    }
    features = {
        name: (model.levels_.get(name) or [None])[0] if name in categorical else 1.0
        for name in model.features
    }
    score["examples"] = [{"features": features, "as_of": state.data_start.isoformat()}]
    return schema
