"""The service's endpoints: predictions under ``/v1``, model info, health, readiness, metrics, admin.

Handlers read the service state from ``request.app.state.flywheel`` (built by ``app.create_app``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flywheel.registry.versions import LoadedModel
from flywheel.serving.online_features import OnlineFeatures
from flywheel.serving.predlog import utc_iso
from flywheel.serving.schemas import (
    BatchPrediction,
    BatchRequest,
    Prediction,
    PredictRequest,
    ScoreRequest,
    errors,
)
from flywheel.serving.state import State, check_champion

router = APIRouter()


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
        raise HTTPException(503, state.last_error or "online store unavailable")
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
        state.metrics.probability.observe(value)
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


def _lookup(state: State, ids: list[int]) -> tuple[list[dict[str, Any] | None], list[bool], list[str | None]]:
    rows, times = _online(state).read_timed(ids)
    missing = [row is None for row in rows]
    if any(missing):
        state.metrics.missing.inc(sum(missing))
    if state.config.serving.cold_start:
        rows = [row if row is not None else {} for row in rows]
    return rows, missing, times


def _invalid(field: str, message: str, kind: str = "value_error") -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}


@router.post(
    "/v1/predict",
    response_model=Prediction,
    response_model_exclude_none=True,
    responses=errors(400, 404, 413, 503),
)
async def predict(
    body: PredictRequest, state: Service, model: Served, explain: Explain = None
) -> JSONResponse:
    """Churn probability of one customer, from their online features."""
    rows, missing, times = _lookup(state, [body.customer_id])
    if rows[0] is None:
        raise HTTPException(
            404,
            f"customer {body.customer_id} has no online features "
            "(unknown, or not active within the feature TTL)",
        )
    answer = _respond(
        state, model, [body.customer_id], rows, missing, explain == "features", "predict", times
    )
    return JSONResponse(answer[0])


@router.post(
    "/v1/predict/batch",
    response_model=BatchPrediction,
    response_model_exclude_none=True,
    responses=errors(400, 413, 503),
)
async def predict_batch(
    body: BatchRequest, state: Service, model: Served, explain: Explain = None
) -> JSONResponse:
    """Churn probabilities of many customers in one call (unknown ones are listed in not_found)."""
    limit = state.config.serving.max_batch
    if len(body.customer_ids) > limit:
        raise HTTPException(413, f"{len(body.customer_ids)} ids exceed the batch limit of {limit}")
    rows, missing, times = _lookup(state, body.customer_ids)
    found = [i for i, row in enumerate(rows) if row is not None]
    predictions = (
        _respond(
            state,
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


@router.post(
    "/v1/score", response_model=Prediction, response_model_exclude_none=True, responses=errors(400, 413, 503)
)
async def score(body: ScoreRequest, state: Service, model: Served) -> JSONResponse:
    """Churn probability from a full feature vector the client already holds."""
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
    answer = _respond(
        state, model, [body.customer_id], [body.features], [False], False, "score", [utc_iso(body.as_of)]
    )
    return JSONResponse(answer[0])


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
    """Ready when a model is loaded, the online store answers and the prediction log is writing."""
    reasons = []
    if state.model is None:
        reasons.append(state.last_error or "no model loaded")
    try:
        _online(state).ping()
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
    """Prometheus metrics, with the newest drift report's figures as gauges."""
    state.metrics.update_drift(state.workdir.reports)
    return PlainTextResponse(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def admin(state: Service, authorization: Annotated[str | None, Header()] = None) -> None:
    token = state.config.serving.admin_token
    if token is None or authorization != f"Bearer {token}":
        raise HTTPException(401, "admin endpoints need `Authorization: Bearer <serving.admin_token>`")


@router.post("/v1/admin/reload", dependencies=[Depends(admin)], responses=errors(401))
async def reload(state: Service) -> dict[str, Any]:
    """Check the champion alias now and swap in a new version if it moved."""
    changed = await check_champion(state)
    return {
        "changed": changed,
        "version": state.model.version if state.model else None,
        "last_error": state.last_error,
    }
