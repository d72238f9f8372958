"""The service's request and response bodies: every value a client sends is bounded here, before it
reaches the model, the prediction log or a metric.

Ids fit the entity key's type (Feast ``INT64``), feature values are finite numbers within
``±MAX_NUMBER``, strings of at most ``MAX_STRING`` characters, or null; a feature vector has at most
``MAX_FEATURES`` entries. Data times are checked against the data's range by the handlers (the bounds
depend on the workdir and the clock).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, WithJsonSchema

MAX_ID = 2**63 - 1  # Feast's INT64 entity key and SQLite's INTEGER
MAX_NUMBER = 1e15  # far beyond any count, amount or day difference; float64 holds it exactly
MAX_STRING = 256
MAX_FEATURES = 1000

CustomerId = Annotated[StrictInt, Field(ge=0, le=MAX_ID, description="theLook users.id")]


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
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
                {"type": "string", "maxLength": MAX_STRING},
                {"type": "null"},
            ]
        }
    ),
]
FeatureName = Annotated[str, Field(min_length=1, max_length=128)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"customer_id": 42}]})
    customer_id: CustomerId


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"customer_ids": [42, 43]}]})
    customer_ids: list[CustomerId] = Field(..., min_length=1)


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[FeatureName, FeatureValue] = Field(
        ...,
        max_length=MAX_FEATURES,
        description="Feature name → value; every model feature is required (see `GET /v1/model`).",
    )
    customer_id: CustomerId | None = Field(None, description="Recorded in the prediction log.")
    as_of: datetime | None = Field(
        None,
        description="Data time of the features (for delayed-label performance); not before the "
        "data starts nor after now. A time without an offset is UTC.",
    )


class Prediction(BaseModel):
    customer_id: int | None = None
    churn_probability: float
    risk_band: str
    model_version: str
    request_id: str
    features_missing: bool = False
    features: dict[str, Any] | None = None


class BatchPrediction(BaseModel):
    predictions: list[Prediction]
    not_found: list[int]


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
        404: "Unknown customer (no online features within the TTL)",
        413: "Body larger than serving.max_body_bytes, or more ids than serving.max_batch",
        503: "No model loaded or the online store is unavailable",
    }
    out: dict[int | str, dict[str, Any]] = {
        code: {"model": Error, "description": described[code]} for code in codes
    }
    out[422] = {"model": InvalidBody, "description": "Invalid input, each problem naming its field"}
    return out
