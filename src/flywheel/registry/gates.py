"""The quality gate: each check compares a measured value of a model version with a configured bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.config import GatesConfig
from flywheel.errors import ConfigError


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    threshold: float
    passed: bool


def single_row_latency_p99_ms(
    predict: Callable[[list[dict[str, Any]]], Any], records: list[dict[str, Any]], repeats: int = 200
) -> float:
    """p99 latency in milliseconds of ``predict`` on one feature dict at a time (after a warm-up).

    ``predict`` is the serving path (``TabularModel.predict_records``), so the figure is what the
    service will spend scoring a request, not what an MLflow pyfunc would."""
    predict([records[0]])
    timings = []
    for i in range(repeats):
        row = [records[i % len(records)]]
        started = time.perf_counter()
        predict(row)
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 99))


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**2


def evaluate_gates(
    gates: GatesConfig, metrics: dict[str, float], latency_ms: float, size_mb: float
) -> list[GateCheck]:
    """Each bound against the measured value; a configured metric the evaluation did not produce is
    an error naming it (a typo must not pass a gate silently)."""
    bounded = (
        set(gates.min_metrics) | set(gates.max_metrics) | ({"ece"} if gates.max_calibration_error else set())
    )
    unknown = sorted(bounded - set(metrics))
    if unknown:
        raise ConfigError(
            f"registry.gates: no test metric named {unknown}; the evaluation gives {sorted(metrics)}"
        )
    lower = {"roc_auc": gates.min_roc_auc, "pr_auc": gates.min_pr_auc, **gates.min_metrics}
    checks = [GateCheck(name, metrics[name], bound, metrics[name] >= bound) for name, bound in lower.items()]
    upper = {
        **({"ece": gates.max_calibration_error} if gates.max_calibration_error else {}),
        **gates.max_metrics,
    }
    checks += [GateCheck(name, metrics[name], bound, metrics[name] <= bound) for name, bound in upper.items()]
    return [
        *checks,
        GateCheck(
            "p99_latency_ms", latency_ms, gates.max_p99_latency_ms, latency_ms <= gates.max_p99_latency_ms
        ),
        GateCheck("artifact_mb", size_mb, gates.max_artifact_mb, size_mb <= gates.max_artifact_mb),
    ]
