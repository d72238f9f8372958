"""The service's Prometheus metrics: requests, latency, served probabilities, the served model, the
prediction log writer, and the newest drift report as gauges.

Every label value is bounded: endpoints are route templates (unknown paths share ``other``), statuses
are HTTP codes, versions and columns come from the registry and the drift report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self, log: Any = lambda: None) -> None:
        """``log`` returns the service's prediction log (None before startup)."""
        self.registry = CollectorRegistry()
        self.registry.register(PredictionLogCollector(log))
        self.requests = Counter(
            "flywheel_requests_total",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flywheel_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.probability = Histogram(
            "flywheel_predicted_probability",
            "Served predicted probabilities (the use case's score; multiclass: the predicted class's)",
            registry=self.registry,
            buckets=[i / 10 for i in range(1, 11)],
        )
        self.predicted_class = Counter(
            "flywheel_predicted_class_total",
            "Served predictions by predicted class (multiclass use cases)",
            ["class"],
            registry=self.registry,
        )
        self.missing = Counter(
            "flywheel_missing_features_total", "Predictions without online features", registry=self.registry
        )
        self.model_info = Gauge(
            "flywheel_model_info", "The served model version", ["version"], registry=self.registry
        )
        self.reloads = Counter("flywheel_model_reloads_total", "Champion swaps", registry=self.registry)
        self.reload_failures = Counter(
            "flywheel_model_reload_failures_total", "Versions that failed to load", registry=self.registry
        )
        self.drift_score = Gauge(
            "flywheel_drift_score",
            "Drift statistic per column in the newest drift report (the score field: prediction drift)",
            ["column", "test"],
            registry=self.registry,
        )
        self.drift_detected = Gauge(
            "flywheel_drift_detected", "1 when the column drifted", ["column"], registry=self.registry
        )
        self.drift_psi = Gauge(
            "flywheel_drift_psi", "PSI per numeric column", ["column"], registry=self.registry
        )
        self.dataset_drift = Gauge(
            "flywheel_dataset_drift", "1 when the newest report found dataset drift", registry=self.registry
        )
        self.drift_share = Gauge(
            "flywheel_drift_share", "Share of drifted columns in the newest report", registry=self.registry
        )
        self.drift_report: str | None = None

    def update_drift(self, reports: Path) -> None:
        """Export the newest ``reports/drift-*.json`` (names sort by time) when it changed."""
        newest = max(reports.glob("drift-*.json"), default=None)
        if newest is None or newest.name == self.drift_report:
            return
        try:
            report = json.loads(newest.read_text())
        except (OSError, ValueError):  # being written: the next scrape reads it
            return
        for gauge in (self.drift_score, self.drift_detected, self.drift_psi):
            gauge.clear()
        for column in [*report["columns"], *([report["prediction"]] if report.get("prediction") else [])]:
            self.drift_score.labels(column["column"], column["test"]).set(column["score"])
            self.drift_detected.labels(column["column"]).set(int(column["drifted"]))
            if column.get("psi") is not None:
                self.drift_psi.labels(column["column"]).set(column["psi"])
        self.dataset_drift.set(int(report["dataset_drift"]))
        self.drift_share.set(report["drifted_share"])
        self.drift_report = newest.name


class PredictionLogCollector(Collector):
    """The prediction log writer's state, read at scrape time."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def collect(self) -> Iterator[Any]:
        log = self.log()
        if log is None:
            return
        yield GaugeMetricFamily(
            "flywheel_prediction_log_up",
            "1 when the prediction log writer runs and its last write worked",
            value=int(log.healthy),
        )
        yield GaugeMetricFamily(
            "flywheel_prediction_log_pending", "Predictions queued for the log", value=log.pending
        )
        for name, help_, value in (
            ("written", "Predictions written to the log", log.written),
            ("write_errors", "Failed log writes (retried)", log.write_errors),
            ("rejected", "Predictions the log could not store (skipped)", log.rejected),
            ("dropped", "Queued predictions dropped while the log was failing", log.dropped),
        ):
            yield CounterMetricFamily(f"flywheel_prediction_log_{name}", help_, value=value)
