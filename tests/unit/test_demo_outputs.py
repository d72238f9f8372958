"""The demo's first pipeline run must make a champion: a run whose version the quality gate stopped
is a clear error (it was a KeyError on the publish step's missing output)."""

from __future__ import annotations

import pytest

from flywheel.demo import first_outputs
from flywheel.errors import FlywheelError
from flywheel.pipeline.runs import PipelineRecord, StepRecord


def record(gate_passed: str) -> PipelineRecord:
    steps = [
        StepRecord("eval", "SUCCEEDED", outputs={"roc_auc": "0.8"}),
        StepRecord("model_upload", "SUCCEEDED", outputs={"version": "1", "gate_passed": gate_passed}),
    ]
    if gate_passed == "true":
        steps.append(StepRecord("publish", "SUCCEEDED", outputs={"champion": "1"}))
    else:
        steps.append(StepRecord("publish", "SKIPPED"))
    return PipelineRecord("run-1", "SUCCEEDED", 0.0, 1.0, {}, steps)


def test_a_version_the_gate_stopped_is_named_not_a_key_error() -> None:
    with pytest.raises(FlywheelError, match=r"run-1: v1 failed the quality gate.*max_p99_latency_ms"):
        first_outputs(record("false"))


def test_a_passed_gate_gives_the_steps_outputs() -> None:
    evaluated, upload, published = first_outputs(record("true"))
    assert (evaluated["roc_auc"], upload["version"], published["champion"]) == ("0.8", "1", "1")
