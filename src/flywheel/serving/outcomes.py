"""``POST /v1/outcomes``: what happened after an answer — a conversion, a click, a subscription —
posted by request id. The outcomes are written to the prediction log beside the predictions and
joined with them per rollout arm (:mod:`flywheel.rollout.arms`): the A/B test's rates and the
bandit's posteriors. A request id no service answered is accepted and never joined (the log is the
join, not the endpoint: the prediction may still be queued on another host).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from flywheel.serving.schemas import errors

router = APIRouter()


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" includes 1.0; strict validation then refuses what lax validation took
    # for 0 or 1 and the schema does not: false, true, "1"
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(
        pattern="^[0-9a-f]{32}$", description="The `request_id` of the answer the outcome follows."
    )
    outcome: Annotated[int, BeforeValidator(_integral)] = Field(
        strict=True, ge=0, le=1, description="1: it happened (a conversion); 0: it did not."
    )


class Outcomes(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcomes": [{"request_id": "0" * 32, "outcome": 1}]}]},
    )
    outcomes: list[Outcome] = Field(min_length=1, description="Outcomes of answered requests.")


class Accepted(BaseModel):
    accepted: int


async def _limit(request: Request, body: Outcomes) -> Outcomes:
    limit = request.app.state.flywheel.config.serving.max_batch
    if len(body.outcomes) > limit:
        raise HTTPException(413, f"{len(body.outcomes)} outcomes exceed the batch limit of {limit}")
    return body


@router.post("/v1/outcomes", response_model=Accepted, responses=errors(400, 413, 503))
async def outcomes(request: Request, body: Annotated[Outcomes, Depends(_limit)]) -> Accepted:
    """Outcomes of answered requests, by request id: joined with the predictions to compare a
    rollout's arms (`flywheel rollout status`) and to steer a bandit."""
    log = request.app.state.flywheel.log
    if log is None or not log.alive:
        raise HTTPException(503, "the prediction log is not writing; outcomes cannot be kept")
    now = datetime.now(UTC).isoformat()
    for item in body.outcomes:
        log.append_outcome(item.request_id, item.outcome, now)
    return Accepted(accepted=len(body.outcomes))
