"""The newest monitoring reports as Prometheus gauges: drift (``reports/drift-*.json``), realized
performance with delayed labels and performance estimated before them (``reports/performance-*.json``),
and the performance trigger's bound.

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
PERFORMANCE_METRICS = ("roc_auc", "pr_auc", "brier", "accuracy", "f1", "macro_f1", "log_loss")
REALIZED = "realized"  # the `kind` label: measured on labelled predictions
ESTIMATED = "estimated"  # …estimated from calibrated probabilities before the labels


class ReportMetrics(Collector):
    """Drift and performance gauges from the newest report of each kind (names sort by time), re-read
    only when a newer report appears."""

    def __init__(self, performance_metric: str = "roc_auc", performance_bound: float | None = None) -> None:
        self.performance_metric, self.performance_bound = performance_metric, performance_bound
        self.drift_report: str | None = None
        self.performance_report: str | None = None
        self._drift: dict[str, Any] | None = None
        self._performance: dict[tuple[str, str], float] = {}  # (metric, kind) → newest period's
        self._periods: list[tuple[str, str, str, float]] = []  # (period start, metric, kind, value)

    def update_drift(self, reports: Path) -> None:
        """Read the newest ``reports/drift-*.json`` when it changed."""
        newest, report = _newest(reports, "drift", self.drift_report)
        if report is not None:
            self._drift, self.drift_report = report, newest

    def update_performance(self, reports: Path) -> None:
        """Read the newest ``reports/performance-*.json`` when it changed: the realized figures of its
        newest period whose ``performance_metric`` is known (a period with labels; pending ones have
        none), the estimated figures of its newest period, and every period's figures of both kinds."""
        newest, report = _newest(reports, "performance", self.performance_report)
        if report is None:
            return
        periods = report.get("periods", [])
        labelled = [p for p in periods if p.get(self.performance_metric) is not None]
        period = max(labelled, key=lambda p: p["start"], default={})
        estimated = max((p for p in periods if p.get("estimated")), key=lambda p: p["start"], default={})
        self._performance = {
            **{(m, REALIZED): float(period[m]) for m in PERFORMANCE_METRICS if period.get(m) is not None},
            **{(m, ESTIMATED): float(v) for m, v in estimated.get("estimated", {}).items()},
        }
        self._periods = [
            *(
                (p["start"], m, REALIZED, float(p[m]))
                for p in periods
                for m in PERFORMANCE_METRICS
                if p.get(m) is not None
            ),
            *(
                (p["start"], m, ESTIMATED, float(v))
                for p in periods
                for m, v in p.get("estimated", {}).items()
            ),
        ]
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
            "Performance in the newest performance report, by metric: realized (kind=realized, the "
            "newest labelled period) and estimated before labels (kind=estimated, the newest period)",
            labels=["metric", "kind"],
        )
        for (metric, kind), value in self._performance.items():
            performance.add_metric([metric, kind], value)
        yield performance
        by_period = GaugeMetricFamily(
            "flywheel_performance_period",
            "Realized and estimated performance of every period in the newest performance report",
            labels=["period", "metric", "kind"],
        )
        for start, metric, kind, value in self._periods:
            by_period.add_metric([start, metric, kind], value)
        yield by_period
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
