"""The service's endpoints: predictions under ``/v1``, model info, health, readiness, metrics, admin.

Handlers read the service state from ``request.app.state.flywheel`` (built by ``app.create_app``).
The prediction endpoints' bodies are the use case's (``schemas.bodies``): :func:`router_for` registers
each handler with its body type, so the OpenAPI schema names the use case's fields.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flywheel.registry.versions import LoadedModel
from flywheel.rollout.state import CHALLENGER, CHAMPION
from flywheel.rollout.stats import in_slice, pick
from flywheel.serving import outcomes
from flywheel.serving.cache import Entry, PredictionCache, generation
from flywheel.serving.cache import key as cache_key
from flywheel.serving.online_features import OnlineFeatures
from flywheel.serving.predlog import SHADOW, utc_iso
from flywheel.serving.schemas import PREDICTED_CLASS, bodies, errors
from flywheel.serving.state import State, refresh
from flywheel.usecases.spec import UseCase

_logger = logging.getLogger(__name__)
router = APIRouter()  # the endpoints whose bodies do not depend on the use case
NOT_MATERIALIZED = "online store not materialized yet (run `flywheel features materialize`)"
SHADOW_ON_LOOP = 16  # rows a shadow challenger scores on the event loop (more: in a worker thread)


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
ForcedArm = Annotated[
    str | None,
    Header(
        alias="X-Flywheel-Arm",
        description="During a rollout, force the arm that answers (for testing): champion | challenger.",
        pattern="^(champion|challenger)$",
    ),
]


class Arms:
    """Which model answers each entity of a request, decided once per request from the rollout the
    service follows: a canary's or A/B test's sticky slice of entities, the bandit's shares, or a
    forced arm. Without a rollout every arm is None (nothing is logged or answered about arms)."""

    def __init__(self, state: State, model: LoadedModel, ids: list[Any], forced: str | None = None) -> None:
        rollout, challenger = state.rollout, state.challenger  # read once: the poller may swap them
        self.models: dict[str | None, LoadedModel] = {None: model, CHAMPION: model}
        self.shadow: LoadedModel | None = None
        self.state = state
        self.watch = state.watch if rollout is not None and challenger is not None else None
        if rollout is None or challenger is None:
            if forced == CHALLENGER:
                raise HTTPException(409, "no challenger is being rolled out; X-Flywheel-Arm: challenger")
            self.arms: list[str | None] = [None] * len(ids)
            return
        self.models[CHALLENGER] = challenger
        if forced is not None:
            self.arms = [forced] * len(ids)
        elif rollout.mode == "shadow":
            self.arms, self.shadow = [CHAMPION] * len(ids), challenger
        elif rollout.mode == "bandit":
            self.arms = [pick(state.shares, random.random()) for _ in ids]
        else:  # canary, ab: the same entities every time; a request naming none draws its arm
            self.arms = [
                CHALLENGER
                if (
                    in_slice(rollout.id, e, rollout.percent)
                    if e is not None
                    else random.random() < rollout.percent / 100
                )
                else CHAMPION
                for e in ids
            ]

    def select(self, keep: list[int]) -> Arms:
        """These arms for the rows at ``keep`` (the entities found)."""
        chosen = object.__new__(Arms)
        chosen.models, chosen.shadow, chosen.watch, chosen.state = (
            self.models,
            self.shadow,
            self.watch,
            self.state,
        )
        chosen.arms = [self.arms[i] for i in keep]
        return chosen

    def predict(self, rows: list[dict[str, Any]], known: list[Any] | None = None) -> list[Any]:
        """Each row scored by its arm's model (one call per arm), except the ``known`` outputs (from
        the prediction cache). Rows the challenger fails to score are answered by the champion (and
        their arm says so); the guards count the failure."""
        if known is None and len(set(self.arms)) == 1 and self.arms[0] != CHALLENGER:
            return self._score(self.arms[0], rows)
        out: list[Any] = list(known) if known is not None else [None] * len(rows)
        todo = [i for i, p in enumerate(out) if p is None]
        for arm in {self.arms[i] for i in todo}:
            at = [i for i in todo if self.arms[i] == arm]
            try:
                scores = self._score(arm, [rows[i] for i in at])
            except Exception:
                if arm != CHALLENGER:
                    raise
                _logger.exception(
                    "challenger v%s failed to score; the champion answers", self.models[arm].version
                )
                for i in at:
                    self.arms[i] = CHAMPION
                scores = self._score(CHAMPION, [rows[i] for i in at])
            for i, p in zip(at, scores, strict=True):
                out[i] = p
        return out

    def _score(self, arm: str | None, rows: list[dict[str, Any]]) -> list[Any]:
        model = self.models[arm]
        if self.watch is None or arm is None:
            return list(model.predict(rows))
        return watched(self.state, arm, model, rows)


def watched(state: State, arm: str, model: LoadedModel, rows: list[dict[str, Any]]) -> list[Any]:
    """``model``'s scores of ``rows``, timed and counted for the rollout's guards and metrics."""
    watch = state.watch
    scored, failures, timed = state.metrics.arms[arm]
    started = time.perf_counter()
    try:
        scores = list(model.predict(rows))
    except Exception:
        failures.inc(len(rows))
        if watch is not None:
            watch.failed(arm, len(rows))
        raise
    seconds = time.perf_counter() - started
    timed.observe(seconds)
    scored.inc(len(rows))
    if watch is not None:
        watch.scored(arm, seconds, [_value(p) for p in scores])
    return scores


def _value(p: Any) -> float:
    """The logged score of one model output: the probability, or the predicted class's."""
    return float(max(p)) if isinstance(p, list) or getattr(p, "ndim", 0) else float(p)


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
    arms: Arms,
    ids: list[Any],
    rows: list[dict[str, Any]],
    missing: list[bool],
    explain: bool,
    endpoint: str,
    as_of: list[str | None],
    background: BackgroundTasks | None = None,
    cached: Cached | None = None,
) -> list[dict[str, Any]]:
    """The answers, each logged; with a shadow challenger, ``background`` scores the same rows after
    the response is sent; ``cached`` holds the outputs the prediction cache had, and takes the new."""
    names = state.bodies
    probabilities = arms.predict(rows, cached.outputs if cached is not None else None)
    if cached is not None:
        cached.keep(state, arms, ids, rows, missing, as_of, probabilities)
    now = datetime.now(UTC).isoformat()
    out = []
    for entity, row, gone, p, when, arm in zip(
        ids, rows, missing, probabilities, as_of, arms.arms, strict=True
    ):
        request_id = uuid.uuid4().hex
        model = arms.models[arm]
        value, predicted, per_class = _scored(names.classes, p)
        if names.classes:  # a probability per class: the answer names them and the most probable
            answer = {names.key: entity, names.score: dict(zip(names.classes, per_class, strict=True))}
            answer[PREDICTED_CLASS] = predicted
            state.metrics.predicted_class.labels(predicted).inc()
        else:
            answer = {names.key: entity, names.score: value}
            if names.band:
                answer[names.band] = _band(state, value)
        state.metrics.probability.observe(value)
        state.log.append(
            request_id, now, entity, model.version, value, row, endpoint, when, predicted, per_class, arm
        )
        answer.update(model_version=model.version, request_id=request_id, features_missing=gone)
        if arm is not None:
            answer["arm"] = arm
        if explain:
            answer["features"] = row
        if entity is None:
            del answer[names.key]
        out.append(answer)
    if arms.shadow is not None and background is not None:
        shadowed = [answer["request_id"] for answer in out]
        task = _shadow_on_loop if len(rows) <= SHADOW_ON_LOOP else _shadow
        background.add_task(task, state, arms.shadow, shadowed, now, ids, rows, endpoint, as_of)
    return out


def _scored(classes: tuple[str, ...], p: Any) -> tuple[float, str | None, list[float] | None]:
    """(the logged score, the predicted class, each class's probability) of one model output (an
    array, or a list from the prediction cache)."""
    if not classes:
        return float(p), None, None
    per_class = [float(x) for x in p]
    chosen = max(range(len(per_class)), key=per_class.__getitem__)
    return per_class[chosen], classes[chosen], per_class


async def _shadow_on_loop(*args: Any) -> None:
    """``_shadow`` on the event loop once the response is sent. Starlette runs a plain function's
    background task in a worker thread: for a row or two its hand-off, and the GIL passed back and
    forth with the requests in flight, cost several times the scoring (shadow halved throughput)."""
    _shadow(*args)


def _shadow(
    state: State,
    challenger: LoadedModel,
    request_ids: list[str],
    now: str,
    ids: list[Any],
    rows: list[dict[str, Any]],
    endpoint: str,
    as_of: list[str | None],
) -> None:
    """The shadow challenger's scores of rows already answered, logged under the same request ids;
    after the response, so it never delays or fails one."""
    try:
        probabilities = watched(state, SHADOW, challenger, rows)
        for request_id, entity, row, p, when in zip(
            request_ids, ids, rows, probabilities, as_of, strict=True
        ):
            value, predicted, per_class = _scored(state.bodies.classes, p)
            state.log.append(
                request_id,
                now,
                entity,
                challenger.version,
                value,
                row,
                endpoint,
                when,
                predicted,
                per_class,
                SHADOW,
            )
    except Exception:  # whatever the challenger does, the answered requests stand
        _logger.exception("shadow challenger v%s failed to score", challenger.version)


class Cached:
    """What the prediction cache holds for a request's entities, keyed by each entity's arm's model
    version and the online store's materialization (:mod:`flywheel.serving.cache`)."""

    def __init__(
        self, cache: PredictionCache, name: str, generation: int, ids: list[Any], arms: Arms
    ) -> None:
        self.cache, self.name, self.generation = cache, name, generation
        self.entries = cache.get_many(self.keys(arms, ids))
        self.outputs: list[Any] = [e.output if e is not None else None for e in self.entries]

    def keys(self, arms: Arms, ids: list[Any]) -> list[str]:
        return [
            cache_key(self.name, arms.models[arm].version, self.generation, entity)
            for entity, arm in zip(ids, arms.arms, strict=True)
        ]

    def select(self, keep: list[int]) -> Cached:
        chosen = object.__new__(Cached)
        chosen.cache, chosen.generation, chosen.name = self.cache, self.generation, self.name
        chosen.entries = [self.entries[i] for i in keep]
        chosen.outputs = [self.outputs[i] for i in keep]
        return chosen

    def keep(
        self,
        state: State,
        arms: Arms,
        ids: list[Any],
        rows: list[dict[str, Any]],
        missing: list[bool],
        as_of: list[str | None],
        outputs: list[Any],
    ) -> None:
        """Cache the outputs just scored from found online rows (by the arm that scored them)."""
        fresh = [i for i, e in enumerate(self.entries) if e is None and not missing[i]]
        if not fresh:
            return
        keys = self.keys(arms, ids)
        self.cache.put_many([(keys[i], Entry(rows[i], as_of[i], _plain(outputs[i]))) for i in fresh])


def _plain(p: Any) -> float | list[float]:
    return [float(x) for x in p] if getattr(p, "ndim", 0) else float(p)


def _read(
    state: State, arms: Arms, ids: list[Any]
) -> tuple[list[dict[str, Any] | None], list[bool], list[str | None], Cached | None]:
    """The online rows of ``ids``, those the prediction cache has from it, the rest from the store."""
    online = _online(state)
    found = generation(online.watermark) if state.cache is not None else None
    if found is None:  # no cache, or nothing materialized
        return *_lookup(state, ids), None
    cached = Cached(state.cache, state.config.spec.name, found, ids, arms)
    rows: list[dict[str, Any] | None] = [e.row if e is not None else None for e in cached.entries]
    times = [e.as_of if e is not None else None for e in cached.entries]
    missing = [False] * len(ids)
    todo = [i for i, e in enumerate(cached.entries) if e is None]
    if todo:
        read, gone, when = _lookup(state, [ids[i] for i in todo])
        for i, row, absent, at in zip(todo, read, gone, when, strict=True):
            rows[i], missing[i], times[i] = row, absent, at
    return rows, missing, times, cached


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


async def predict(
    body: Any,
    state: Service,
    model: Served,
    background: BackgroundTasks,
    explain: Explain = None,
    arm: ForcedArm = None,
) -> JSONResponse:
    """The predicted probability for one entity, from its online features (and the features the
    request carries, for a use case whose callers send them)."""
    entity = getattr(body, state.bodies.key)
    arms = Arms(state, model, [entity], arm)
    if state.bodies.request:
        return JSONResponse(_predict_request(state, arms, body, explain == "features", background))
    rows, missing, times, cached = _read(state, arms, [entity])
    if rows[0] is None:
        raise HTTPException(
            404,
            f"{state.config.spec.entity.name} {entity} has no online features "
            "(unknown, or not active within the feature TTL)",
        )
    answer = _respond(
        state, arms, [entity], rows, missing, explain == "features", "predict", times, background, cached
    )
    return JSONResponse(answer[0])


def _predict_request(
    state: State, arms: Arms, body: Any, explain: bool, background: BackgroundTasks
) -> dict[str, Any]:
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
    return _respond(state, arms, [entity], [row], [found is None], explain, "predict", [as_of], background)[0]


async def predict_batch(
    body: Any,
    state: Service,
    model: Served,
    background: BackgroundTasks,
    explain: Explain = None,
    arm: ForcedArm = None,
) -> JSONResponse:
    """Predicted probabilities of many entities in one call (unknown ones are listed in not_found)."""
    ids = getattr(body, state.bodies.keys)
    limit = state.config.serving.max_batch
    if len(ids) > limit:
        raise HTTPException(413, f"{len(ids)} ids exceed the batch limit of {limit}")
    if state.bodies.request:
        explained = explain == "features"
        predictions = [
            _predict_request(
                state, Arms(state, model, [getattr(r, state.bodies.key)], arm), r, explained, background
            )
            for r in ids
        ]
        return JSONResponse({"predictions": predictions, "not_found": []})
    arms = Arms(state, model, ids, arm)
    rows, missing, times, cached = _read(state, arms, ids)
    found = [i for i, row in enumerate(rows) if row is not None]
    predictions = (
        _respond(
            state,
            arms.select(found),
            [ids[i] for i in found],
            [rows[i] for i in found],
            [missing[i] for i in found],
            explain == "features",
            "predict_batch",
            [times[i] for i in found],
            background,
            cached.select(found) if cached is not None else None,
        )
        if found
        else []
    )
    not_found = [c for c, row in zip(ids, rows, strict=True) if row is None]
    return JSONResponse({"predictions": predictions, "not_found": not_found})


async def score(
    body: Any, state: Service, model: Served, background: BackgroundTasks, arm: ForcedArm = None
) -> JSONResponse:
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
    arms = Arms(state, model, [entity], arm)
    as_of = [utc_iso(body.as_of)]
    answer = _respond(state, arms, [entity], [body.features], [False], False, "score", as_of, background)
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
        responses=errors(400, 404, 409, 413, 503),
        **common,
    )
    typed.add_api_route(
        "/v1/predict/batch",
        _typed(predict_batch, named.batch),
        methods=["POST"],
        response_model=named.batch_prediction,
        responses=errors(400, 409, 413, 503),
        **common,
    )
    typed.add_api_route(
        "/v1/score",
        _typed(score, named.score_request),
        methods=["POST"],
        response_model=named.prediction,
        responses=errors(400, 409, 413, 503),
        **common,
    )
    typed.routes.extend(router.routes)
    typed.routes.extend(outcomes.router.routes)
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
