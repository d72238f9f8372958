"""The newest monitoring reports as Prometheus gauges: drift (``reports/drift-*.json``) and realized
performance with delayed labels (``reports/performance-*.json``), and the performance trigger's bound.

A collector, not gauges set once: every worker process reads the same files at scrape time, so a
service with ``--workers N`` exports the same figures whichever worker answers, and a column or a
metric that leaves the newest report leaves ``/metrics`` with it (a multiprocess gauge's old label
values stay in its files for the life of the service).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# the labelled figures of a performance period exported beside the trigger's own metric
PERFORMANCE_METRICS = ("roc_auc", "pr_auc", "brier", "accuracy", "macro_f1", "log_loss")
REALIZED = "realized"  # the `kind` label: measured on labelled predictions


class ReportMetrics(Collector):
    """Drift and performance gauges from the newest report of each kind (names sort by time), re-read
    only when a newer report appears."""

    def __init__(self, performance_metric: str = "roc_auc", performance_bound: float | None = None) -> None:
        self.performance_metric, self.performance_bound = performance_metric, performance_bound
        self.drift_report: str | None = None
        self.performance_report: str | None = None
        self._drift: dict[str, Any] | None = None
        self._performance: dict[str, float] = {}

    def update_drift(self, reports: Path) -> None:
        """Read the newest ``reports/drift-*.json`` when it changed."""
        newest, report = _newest(reports, "drift", self.drift_report)
        if report is not None:
            self._drift, self.drift_report = report, newest

    def update_performance(self, reports: Path) -> None:
        """Read the newest ``reports/performance-*.json`` when it changed: the figures of its newest
        period whose ``performance_metric`` is known (a period with labels; pending ones have none)."""
        newest, report = _newest(reports, "performance", self.performance_report)
        if report is None:
            return
        labelled = [p for p in report.get("periods", []) if p.get(self.performance_metric) is not None]
        period = max(labelled, key=lambda p: p["start"], default={})
        self._performance = {m: float(period[m]) for m in PERFORMANCE_METRICS if period.get(m) is not None}
        self.performance_report = newest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        score = GaugeMetricFamily(
            "flywheel_drift_score",
            "Drift statistic per column in the newest drift report (the score field: prediction drift)",
            labels=["column", "test"],
        )
        detected = GaugeMetricFamily(
            "flywheel_drift_detected", "1 when the column drifted", labels=["column"]
        )
        psi = GaugeMetricFamily("flywheel_drift_psi", "PSI per numeric column", labels=["column"])
        drift = self._drift or {"columns": [], "dataset_drift": False, "drifted_share": 0.0}
        for column in [*drift["columns"], *([drift["prediction"]] if drift.get("prediction") else [])]:
            score.add_metric([column["column"], column["test"]], column["score"])
            detected.add_metric([column["column"]], int(column["drifted"]))
            if column.get("psi") is not None:
                psi.add_metric([column["column"]], column["psi"])
        yield from (score, detected, psi)
        yield GaugeMetricFamily(
            "flywheel_dataset_drift",
            "1 when the newest report found dataset drift",
            value=int(drift["dataset_drift"]),
        )
        yield GaugeMetricFamily(
            "flywheel_drift_share",
            "Share of drifted columns in the newest report",
            value=drift["drifted_share"],
        )
        performance = GaugeMetricFamily(
            "flywheel_performance",
            "Realized performance of the newest labelled period in the newest performance report "
            "(delayed labels), by metric",
            labels=["metric", "kind"],
        )
        for metric, value in self._performance.items():
            performance.add_metric([metric, REALIZED], value)
        yield performance
        threshold = GaugeMetricFamily(
            "flywheel_performance_threshold",
            "The performance trigger's bound on retrain.performance_metric",
            labels=["metric"],
        )
        if self.performance_bound is not None:
            threshold.add_metric([self.performance_metric], self.performance_bound)
        yield threshold


def _newest(reports: Path, kind: str, seen: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """The newest ``<kind>-*.json`` name and its content, or None when it is the one already read."""
    newest = max(reports.glob(f"{kind}-*.json"), default=None)
    if newest is None or newest.name == seen:
        return None, None
    try:
        return newest.name, json.loads(newest.read_text())
    except (OSError, ValueError):  # being written: the next scrape reads it
        return None, None
