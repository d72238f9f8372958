"""The quality gate's checks with injected measurements: no outcome depends on this machine's speed."""

from __future__ import annotations

import time

from flywheel.config import GatesConfig
from flywheel.registry.gates import evaluate_gates, single_row_latency_p99_ms

METRICS = {"roc_auc": 0.8, "pr_auc": 0.6}


def test_the_latency_check_compares_the_measured_p99_with_its_bound() -> None:
    gates = GatesConfig(max_p99_latency_ms=50.0)
    fast = {c.name: c.passed for c in evaluate_gates(gates, METRICS, latency_ms=49.9, size_mb=1)}
    slow = {c.name: c.passed for c in evaluate_gates(gates, METRICS, latency_ms=51.7, size_mb=1)}
    assert fast["p99_latency_ms"] and not slow["p99_latency_ms"]
    assert fast["roc_auc"] and slow["roc_auc"]


def test_latency_is_timed_on_one_record_at_a_time_through_the_given_path() -> None:
    calls: list[int] = []

    def slow_predict(records: list[dict]) -> list[float]:
        calls.append(len(records))
        time.sleep(0.002)  # at least 2 ms, however fast the machine
        return [0.5] * len(records)

    p99 = single_row_latency_p99_ms(slow_predict, [{"a": 1.0}, {"a": 2.0}], repeats=20)
    assert p99 >= 2.0
    assert calls == [1] * 21  # a warm-up, then single rows
    checks = evaluate_gates(GatesConfig(max_p99_latency_ms=1.0), METRICS, p99, 1)
    assert not next(c for c in checks if c.name == "p99_latency_ms").passed


def test_configured_metric_bounds_gate_in_their_direction() -> None:
    """Multiclass gates: a lower bound on macro-F1 and an upper bound on log loss."""
    metrics = {**METRICS, "macro_f1": 0.55, "log_loss": 0.9}
    gates = GatesConfig(min_metrics={"macro_f1": 0.6}, max_metrics={"log_loss": 1.0})
    checks = {c.name: c.passed for c in evaluate_gates(gates, metrics, latency_ms=1, size_mb=1)}
    assert checks["macro_f1"] is False and checks["log_loss"] is True
    lenient = GatesConfig(min_metrics={"macro_f1": 0.5}, max_metrics={"log_loss": 0.8})
    checks = {c.name: c.passed for c in evaluate_gates(lenient, metrics, latency_ms=1, size_mb=1)}
    assert checks["macro_f1"] is True and checks["log_loss"] is False


def test_a_bound_on_a_metric_the_evaluation_lacks_is_named() -> None:
    import pytest

    from flywheel.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\['macro_f11'\]"):
        evaluate_gates(GatesConfig(min_metrics={"macro_f11": 0.6}), METRICS, latency_ms=1, size_mb=1)
