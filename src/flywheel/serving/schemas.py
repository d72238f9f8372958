"""The service's request and response bodies: every value a client sends is bounded here, before it
reaches the model, the prediction log or a metric.

Ids are integers every JSON client holds exactly (within the entity key's ``INT64``), feature
values finite numbers within ``±MAX_NUMBER``, strings of at most ``MAX_STRING`` characters, or null;
a feature vector has at most ``MAX_FEATURES`` entries. Data times are checked against the data's
range by the handlers (the bounds depend on the workdir and the clock, which JSON Schema cannot
state).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, create_model

from flywheel.usecases.spec import Entity, UseCase

# Ids: within Feast's INT64 entity key and SQLite's INTEGER, and exact in every JSON client (I-JSON,
# RFC 7493: beyond 2^53 a client's double may not hold the id it means, nor a schema's bound)
MAX_ID = 2**53 - 1
MAX_NUMBER = 1e15  # far beyond any count, amount or day difference; float64 holds it exactly
MAX_STRING = 256
MAX_FEATURES = 1000
PREDICTED_CLASS = "predicted_class"  # a multiclass response's field (and the prediction log's column)


def _entity_id(value: Any) -> int:
    # JSON Schema's "integer" includes 42.0; a boolean or a string is not an id
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("expected an integer id")
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"expected an id from 0 to {MAX_ID}")
    return value


def _entity_key(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_STRING:
        raise ValueError(f"expected a string id of 1 to {MAX_STRING} characters")
    return value


def entity_id_type(entity: Entity) -> Any:
    """The annotated type of an entity id in a request body (an int64 or a string key)."""
    if entity.dtype == "int64":
        schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID, "description": entity.description}
        return Annotated[int, PlainValidator(_entity_id), WithJsonSchema(schema)]
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_STRING, "description": entity.description}
    return Annotated[str, PlainValidator(_entity_key), WithJsonSchema(schema)]


NUMBER_SCHEMA = {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
STRING_SCHEMA = {"type": "string", "maxLength": MAX_STRING}


def _feature_value(value: Any) -> float | int | str | None:
    if value is None or (isinstance(value, str) and len(value) <= MAX_STRING):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("expected a finite number")
        if abs(value) > MAX_NUMBER:
            raise ValueError(f"expected a number within ±{MAX_NUMBER:g}")
        return value
    if isinstance(value, str):
        raise ValueError(f"expected a string of at most {MAX_STRING} characters")
    raise ValueError("expected a number, a string or null")


FeatureValue = Annotated[
    Any,
    PlainValidator(_feature_value),
    WithJsonSchema({"anyOf": [NUMBER_SCHEMA, STRING_SCHEMA, {"type": "null"}]}),
]
FeatureName = Annotated[str, Field(min_length=1, max_length=128)]


class ScoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[FeatureName, FeatureValue] = Field(
        ...,
        max_length=MAX_FEATURES,
        description="Feature name → value; every model feature is required (see `GET /v1/model`).",
    )
    as_of: datetime | None = Field(
        None,
        description="Data time of the features (for delayed-label performance); not before the "
        "data starts nor after now. A time without an offset is UTC.",
    )


@dataclass(frozen=True)
class Bodies:
    """The request and response models of one use case: its entity key and score names, and for a use
    case whose caller sends features (``request``), the snapshot entity's key (``snapshot_key``, when
    it is another entity's) that fetches the online features."""

    key: str
    keys: str
    score: str
    band: str | None
    request: tuple[str, ...]
    snapshot_key: str | None
    classes: tuple[str, ...]  # multiclass: the score is a probability per class, plus the predicted class
    predict: type[BaseModel]
    batch: type[BaseModel]
    score_request: type[BaseModel]
    prediction: type[BaseModel]
    batch_prediction: type[BaseModel]


@functools.cache
def bodies(usecase: UseCase) -> Bodies:
    """Build the use case's bodies once, named from its entity and API spec."""
    entity, api = usecase.entity, usecase.api
    key, keys = entity.join_key, f"{entity.join_key}s"
    ident = entity_id_type(entity)
    strict = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [api.example or {key: api.example_id}]}
    )
    fields_in: dict[str, Any] = {key: (ident, ...)}
    snapshot_entity = usecase.snapshot.entity
    snapshot_key = None
    if usecase.labels.request_features:
        if snapshot_entity.join_key != key:
            snapshot_key = snapshot_entity.join_key
            fields_in[snapshot_key] = (
                entity_id_type(snapshot_entity) | None,
                Field(None, description=f"{snapshot_entity.description} Unknown or absent: no history."),
            )
        fields_in.update({name: _request_field(usecase, name) for name in usecase.labels.request_features})
        fields_in["as_of"] = (
            datetime | None,
            Field(None, description="When the request's record holds (data time); default now."),
        )
    predict = create_model("PredictRequest", __config__=strict, **fields_in)
    if usecase.labels.request_features:  # each request carries its own record
        keys = "records"
        batch = create_model(
            "BatchRequest",
            __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [{keys: [api.example]}]}),
            records=(list[predict], Field(..., min_length=1)),
        )
    else:
        batch = create_model(
            "BatchRequest",
            __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [{keys: [api.example_id]}]}),
            **{keys: (list[ident], Field(..., min_length=1))},
        )
    score_request = create_model(
        "ScoreRequest",
        __base__=ScoreBody,
        **{key: (ident | None, Field(None, description="Recorded in the prediction log."))},
    )
    fields: dict[str, Any] = {key: (Any, None), api.score_field: (float, ...)}
    if usecase.classes:
        fields[api.score_field] = (
            dict[str, float],
            Field(
                ..., description=f"Probability of each class ({', '.join(usecase.classes)}), summing to 1."
            ),
        )
        fields[PREDICTED_CLASS] = (
            Literal[usecase.classes],
            Field(..., description="The most probable class."),
        )
    elif api.band_field:
        fields[api.band_field] = (str, ...)
    prediction = create_model(
        "Prediction",
        **fields,
        model_version=(str, ...),
        request_id=(str, ...),
        features_missing=(bool, False),
        arm=(
            Literal["champion", "challenger"] | None,
            Field(None, description="During a rollout, the arm that answered."),
        ),
        features=(dict[str, Any] | None, None),
    )
    batch_prediction = create_model(
        "BatchPrediction", predictions=(list[prediction], ...), not_found=(list[Any], ...)
    )
    return Bodies(
        key,
        keys,
        api.score_field,
        api.band_field,
        usecase.labels.request_features,
        snapshot_key,
        usecase.classes,
        predict,
        batch,
        score_request,
        prediction,
        batch_prediction,
    )


def _request_field(usecase: UseCase, name: str) -> tuple[Any, Any]:
    """A request feature's type, bounds and allowed values, from the raw table column it comes from."""
    column = next(
        (t.columns[t.column_names.index(name)] for t in usecase.tables.values() if name in t.column_names),
        None,
    )
    if column is None:
        return (FeatureValue, Field(None))
    if pa.types.is_string(column.type):
        kind: Any = (
            Literal[column.allowed] if column.allowed else Annotated[str, Field(max_length=MAX_STRING)]
        )
    else:
        base = int if pa.types.is_integer(column.type) else float
        low = column.min_value if column.min_value is not None else -MAX_NUMBER
        high = column.max_value if column.max_value is not None else MAX_NUMBER
        kind = (
            Annotated[base, Field(ge=low, le=high, allow_inf_nan=False)]
            if base is float
            else Annotated[base, Field(ge=low, le=high)]
        )
    return (kind | None, Field(None)) if column.nullable else (kind, ...)


class Problem(BaseModel):
    field: str = Field(..., description="Dotted path of the offending input, e.g. `features.country`.")
    message: str
    type: str


class InvalidBody(BaseModel):
    """422: the request body or a query parameter is not what the endpoint expects."""

    detail: list[Problem]


class Error(BaseModel):
    detail: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error codes an endpoint can answer."""
    described = {
        400: "Malformed request (e.g. a body that cannot be read)",
        401: "Missing or wrong admin token",
        404: "Unknown entity (no online features within the TTL)",
        409: "X-Flywheel-Arm: challenger while no challenger is being rolled out",
        413: "Body larger than serving.max_body_bytes, or more ids than serving.max_batch",
        503: "No model loaded or the online store is unavailable",
    }
    out: dict[int | str, dict[str, Any]] = {
        code: {"model": Error, "description": described[code]} for code in codes
    }
    out[422] = {"model": InvalidBody, "description": "Invalid input, each problem naming its field"}
    return out
