"""The service's endpoints: predictions under ``/v1``, model info, health, readiness, metrics, admin.

Handlers read the service state from ``request.app.state.flywheel`` (built by ``app.create_app``).
The prediction endpoints' bodies are the use case's (``schemas.bodies``): :func:`router_for` registers
each handler with its body type, so the OpenAPI schema names the use case's fields.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flywheel.registry.versions import LoadedModel
from flywheel.serving.online_features import OnlineFeatures
from flywheel.serving.predlog import utc_iso
from flywheel.serving.schemas import PREDICTED_CLASS, bodies, errors
from flywheel.serving.state import State, refresh
from flywheel.usecases.spec import UseCase

router = APIRouter()  # the endpoints whose bodies do not depend on the use case
NOT_MATERIALIZED = "online store not materialized yet (run `flywheel features materialize`)"


async def service_state(request: Request) -> State:  # async: a plain def dependency runs in a thread pool
    return request.app.state.flywheel


Service = Annotated[State, Depends(service_state)]


async def serving_model(state: Service) -> LoadedModel:
    if state.model is None:
        raise HTTPException(503, state.last_error or "no model loaded")
    return state.model


Served = Annotated[LoadedModel, Depends(serving_model)]
Explain = Annotated[
    str | None, Query(description="`features` adds the feature values used.", pattern="^features$")
]


def _online(state: State) -> OnlineFeatures:
    if state.online is None:
        raise HTTPException(503, state.online_error or "online store unavailable")
    return state.online


def _band(state: State, probability: float) -> str:
    chosen = state.bands[0][1]
    for lowest, name in state.bands:
        if probability >= lowest:
            chosen = name
    return chosen


def _respond(
    state: State,
    model: LoadedModel,
    ids: list[Any],
    rows: list[dict[str, Any]],
    missing: list[bool],
    explain: bool,
    endpoint: str,
    as_of: list[str | None],
) -> list[dict[str, Any]]:
    names = state.bodies
    probabilities = model.predict(rows)
    now = datetime.now(UTC).isoformat()
    out = []
    for entity, row, gone, p, when in zip(ids, rows, missing, probabilities, as_of, strict=True):
        request_id = uuid.uuid4().hex
        if names.classes:  # a probability per class: the answer names them and the most probable
            chosen = int(p.argmax())
            value, predicted = float(p[chosen]), names.classes[chosen]
            per_class = [float(x) for x in p]
            answer = {names.key: entity, names.score: dict(zip(names.classes, per_class, strict=True))}
            answer[PREDICTED_CLASS] = predicted
            state.metrics.predicted_class.labels(predicted).inc()
        else:
            value, predicted, per_class = float(p), None, None
            answer = {names.key: entity, names.score: value}
            if names.band:
                answer[names.band] = _band(state, value)
        state.metrics.probability.observe(value)
        state.log.append(
            request_id, now, entity, model.version, value, row, endpoint, when, predicted, per_class
        )
        answer.update(model_version=model.version, request_id=request_id, features_missing=gone)
        if explain:
            answer["features"] = row
        if entity is None:
            del answer[names.key]
        out.append(answer)
    return out


def _lookup(state: State, ids: list[Any]) -> tuple[list[dict[str, Any] | None], list[bool], list[str | None]]:
    rows, times = _online(state).read_timed(ids)
    missing = [row is None for row in rows]
    if any(missing):
        state.metrics.missing.inc(sum(missing))
    if state.config.serving.cold_start:
        rows = [row if row is not None else {} for row in rows]
    return rows, missing, times


def _invalid(field: str, message: str, kind: str = "value_error") -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}


async def predict(body: Any, state: Service, model: Served, explain: Explain = None) -> JSONResponse:
    """The predicted probability for one entity, from its online features (and the features the
    request carries, for a use case whose callers send them)."""
    if state.bodies.request:
        return JSONResponse(_predict_request(state, model, body, explain == "features"))
    entity = getattr(body, state.bodies.key)
    rows, missing, times = _lookup(state, [entity])
    if rows[0] is None:
        raise HTTPException(
            404,
            f"{state.config.spec.entity.name} {entity} has no online features "
            "(unknown, or not active within the feature TTL)",
        )
    answer = _respond(state, model, [entity], rows, missing, explain == "features", "predict", times)
    return JSONResponse(answer[0])


def _predict_request(state: State, model: LoadedModel, body: Any, explain: bool) -> dict[str, Any]:
    """A request carrying the caller's features: they are joined with the online snapshot of the
    snapshot entity (when the request names one the store knows) and the context views' latest rows."""
    if body.as_of is not None:
        problems = _check_data_time(state, body.as_of)
        if problems:
            raise HTTPException(422, problems)
    names, online = state.bodies, _online(state)
    row = {name: getattr(body, name) for name in names.request}
    snapshot_id = getattr(body, names.snapshot_key) if names.snapshot_key else getattr(body, names.key)
    found = None
    if snapshot_id is not None:
        [found], _ = online.read_timed([snapshot_id])
    row.update(found or {})
    row.update(online.context())
    as_of = utc_iso(body.as_of) or datetime.now(UTC).isoformat()
    entity = getattr(body, names.key)
    return _respond(state, model, [entity], [row], [found is None], explain, "predict", [as_of])[0]


async def predict_batch(body: Any, state: Service, model: Served, explain: Explain = None) -> JSONResponse:
    """Predicted probabilities of many entities in one call (unknown ones are listed in not_found)."""
    ids = getattr(body, state.bodies.keys)
    limit = state.config.serving.max_batch
    if len(ids) > limit:
        raise HTTPException(413, f"{len(ids)} ids exceed the batch limit of {limit}")
    if state.bodies.request:
        explained = explain == "features"
        predictions = [_predict_request(state, model, record, explained) for record in ids]
        return JSONResponse({"predictions": predictions, "not_found": []})
    rows, missing, times = _lookup(state, ids)
    found = [i for i, row in enumerate(rows) if row is not None]
    predictions = (
        _respond(
            state,
            model,
            [ids[i] for i in found],
            [rows[i] for i in found],
            [missing[i] for i in found],
            explain == "features",
            "predict_batch",
            [times[i] for i in found],
        )
        if found
        else []
    )
    not_found = [c for c, row in zip(ids, rows, strict=True) if row is None]
    return JSONResponse({"predictions": predictions, "not_found": not_found})


async def score(body: Any, state: Service, model: Served) -> JSONResponse:
    """The predicted probability from a full feature vector the client already holds."""
    problems = [
        _invalid(f"features.{n}", "required by the model", "missing")
        for n in model.features
        if n not in body.features
    ]
    problems += [
        _invalid(f"features.{n}", "not a feature of the model", "extra_forbidden")
        for n in body.features
        if n not in model.features
    ]
    categorical = set(model.model.categorical)
    for name, value in body.features.items():
        if value is None or name not in model.features:
            continue
        if name in categorical and not isinstance(value, str):
            problems.append(_invalid(f"features.{name}", "expected a string or null", "string_type"))
        elif name not in categorical and not isinstance(value, int | float):
            problems.append(_invalid(f"features.{name}", "expected a number or null", "float_type"))
    if body.as_of is not None:
        problems += _check_data_time(state, body.as_of)
    if problems:
        raise HTTPException(422, problems)
    entity = getattr(body, state.bodies.key)
    answer = _respond(state, model, [entity], [body.features], [False], False, "score", [utc_iso(body.as_of)])
    return JSONResponse(answer[0])


def _typed(handler: Callable[..., Any], body: type) -> Callable[..., Any]:
    """``handler`` with its ``body`` parameter typed as ``body``, which FastAPI validates and documents."""

    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        return await handler(*args, **kwargs)

    signature = inspect.signature(handler)
    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=body) if p.name == "body" else p for p in signature.parameters.values()
        ]
    )
    endpoint.__name__, endpoint.__doc__ = handler.__name__, handler.__doc__
    return endpoint


def router_for(usecase: UseCase) -> APIRouter:
    """The prediction endpoints with the use case's bodies, then the shared endpoints."""
    named = bodies(usecase)
    typed = APIRouter()
    common = {"response_model_exclude_none": True}
    typed.add_api_route(
        "/v1/predict",
        _typed(predict, named.predict),
        methods=["POST"],
        response_model=named.prediction,
        responses=errors(400, 404, 413, 503),
        **common,
    )
    typed.add_api_route(
        "/v1/predict/batch",
        _typed(predict_batch, named.batch),
        methods=["POST"],
        response_model=named.batch_prediction,
        responses=errors(400, 413, 503),
        **common,
    )
    typed.add_api_route(
        "/v1/score",
        _typed(score, named.score_request),
        methods=["POST"],
        response_model=named.prediction,
        responses=errors(400, 413, 503),
        **common,
    )
    typed.routes.extend(router.routes)
    return typed


def _check_data_time(state: State, as_of: datetime) -> list[dict[str, str]]:
    """A data time must lie within the data: not before its first snapshot, not after now plus
    ``monitoring.clock_skew_hours`` (the bound the log's readers apply too)."""
    moment = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
    latest = state.config.monitoring.latest_data_time()
    if moment < state.data_start:
        return [_invalid("as_of", f"before the data starts ({state.data_start:%Y-%m-%d})")]
    if moment > latest:
        return [_invalid("as_of", f"in the future (after {latest:%Y-%m-%dT%H:%M:%SZ})")]
    return []


@router.get("/v1/model", responses=errors(503))
async def model_info(state: Service, model: Served) -> dict[str, Any]:
    """The served version, when it was loaded, its features, and where the champion alias points."""
    return {
        "name": state.config.registry.model_name,
        "version": model.version,
        "champion": state.champion,
        "aliases": ["champion"] if state.champion == model.version else [],
        "model_type": model.model.model_type,
        "loaded_at": model.loaded_at.isoformat(),
        "features": model.features,
        "last_error": state.last_error,
    }


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Not ready, with the reasons"}})
async def ready(state: Service) -> JSONResponse:
    """Ready when a model is loaded, the online store is materialized and answers, and the prediction
    log is writing; otherwise 503 with what is missing."""
    reasons = []
    if state.model is None:
        reasons.append(state.last_error or "no model loaded")
    try:
        if not _online(state).materialized:
            reasons.append(NOT_MATERIALIZED)
        else:
            state.online.ping()
    except HTTPException as error:
        reasons.append(error.detail)
    except Exception as error:
        reasons.append(f"online store unreachable ({type(error).__name__})")
    if state.log is not None and state.log.status() is not None:
        reasons.append(state.log.status())
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    body = {"status": "ready", "model_version": state.model.version}
    if state.last_error:
        body["warning"] = state.last_error
    return JSONResponse(body)


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(state: Service) -> PlainTextResponse:
    """Prometheus metrics, with the newest drift and performance reports' figures as gauges."""
    state.metrics.update_drift(state.workdir.reports)
    state.metrics.update_performance(state.workdir.reports)
    return PlainTextResponse(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def admin(state: Service, authorization: Annotated[str | None, Header()] = None) -> None:
    token = state.config.serving.admin_token
    if token is None or authorization != f"Bearer {token}":
        raise HTTPException(401, "admin endpoints need `Authorization: Bearer <serving.admin_token>`")


@router.post("/v1/admin/reload", dependencies=[Depends(admin)], responses=errors(401))
async def reload(state: Service) -> dict[str, Any]:
    """Check the champion alias now and swap in a new version if it moved (and open the online store
    if it was not open)."""
    changed = await refresh(state)
    return {
        "changed": changed,
        "version": state.model.version if state.model else None,
        "last_error": state.last_error,
    }
