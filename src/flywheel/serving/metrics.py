"""The service's Prometheus metrics: requests, latency, served probabilities, the served model, the
prediction log writer, the prediction cache (``cache``), and the newest drift and performance reports as
gauges (``reports``).

Every label value is bounded: endpoints are route templates (unknown paths share ``other``), statuses
are HTTP codes, versions and columns come from the registry and the reports.

With several worker processes (``multiprocess``) the counters and histograms add up over the workers;
``flywheel_model_info`` is 1 for every version a live worker serves and 0 for a version a live worker
served before (a multiprocess gauge cannot drop a label value); the log writer's counts are the sums
of every worker's writer, its ``up`` the minimum and its ``pending`` the sum over live workers; the
cache's counts and entries are the sums over (live) workers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from flywheel.rollout.state import CHALLENGER, CHAMPION
from flywheel.serving import multiprocess
from flywheel.serving.predlog import SHADOW
from flywheel.serving.reports import ReportMetrics

LOG_COUNTS = (
    ("written", "Predictions written to the log"),
    ("write_errors", "Failed log writes (retried)"),
    ("rejected", "Predictions the log could not store (skipped)"),
    ("dropped", "Queued predictions dropped while the log was failing"),
)
LOG_UP = "1 when the prediction log writer runs and its last write worked"
LOG_PENDING = "Predictions queued for the log"


class Metrics:
    def __init__(
        self,
        log: Any = lambda: None,
        performance_metric: str = "roc_auc",
        performance_bound: float | None = None,
    ) -> None:
        """``log`` returns the service's prediction log (None before startup); the performance trigger's
        metric and bound are exported beside the newest report's realized figures."""
        self.multiprocess = multiprocess.enabled()
        self.registry = CollectorRegistry()  # what /metrics exports
        # multiprocess: the metrics write to per-process files, exported merged by one collector
        recorded = None if self.multiprocess else self.registry
        if self.multiprocess:
            self.registry.register(WorkersCollector(None))
            self.log_figures: LogFigures | None = LogFigures()
        else:
            self.registry.register(PredictionLogCollector(log))
            self.log_figures = None  # read from the writer at scrape time
        self.reports = ReportMetrics(performance_metric, performance_bound)
        self.registry.register(self.reports)
        self.requests = Counter(
            "flywheel_requests_total",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=recorded,
        )
        self.latency = Histogram(
            "flywheel_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=recorded,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.probability = Histogram(
            "flywheel_predicted_probability",
            "Served predicted probabilities (the use case's score; multiclass: the predicted class's)",
            registry=recorded,
            buckets=[i / 10 for i in range(1, 11)],
        )
        self.predicted_class = Counter(
            "flywheel_predicted_class_total",
            "Served predictions by predicted class (multiclass use cases)",
            ["class"],
            registry=recorded,
        )
        self.missing = Counter(
            "flywheel_missing_features_total", "Predictions without online features", registry=recorded
        )
        self.model_info = Gauge(
            "flywheel_model_info",
            "The served model version",
            ["version"],
            registry=recorded,
            multiprocess_mode="livemax",
        )
        self.arm_scored = Counter(
            "flywheel_arm_scored_total",
            "Rows each rollout arm's model scored (shadow: off the response path)",
            ["arm"],
            registry=recorded,
        )
        self.arm_failures = Counter(
            "flywheel_arm_failures_total",
            "Rows a rollout arm's model failed to score (the champion answered the challenger's)",
            ["arm"],
            registry=recorded,
        )
        self.arm_seconds = Histogram(
            "flywheel_arm_scoring_seconds",
            "A rollout arm's model call per request",
            ["arm"],
            registry=recorded,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
        )
        self.arm_share = Gauge(
            "flywheel_rollout_share",
            "Each arm's share of the traffic it answers (canary and A/B: of entities; bandit: of requests; "
            "shadow: the challenger scores all, the champion answers all)",
            ["arm"],
            registry=recorded,
            multiprocess_mode="livemax",
        )
        # per arm, looked up once (a label lookup per request costs a canary 2 % of its throughput);
        # exported from the start, at 0
        self.arms = {
            arm: (self.arm_scored.labels(arm), self.arm_failures.labels(arm), self.arm_seconds.labels(arm))
            for arm in (CHAMPION, CHALLENGER, SHADOW)
        }
        self.reloads = Counter("flywheel_model_reloads_total", "Champion swaps", registry=recorded)
        self.reload_failures = Counter(
            "flywheel_model_reload_failures_total", "Versions that failed to load", registry=recorded
        )
        self.cache_hits = Counter(
            "flywheel_cache_hits_total", "Entities answered from the prediction cache", registry=recorded
        )
        self.cache_misses = Counter(
            "flywheel_cache_misses_total",
            "Entities the prediction cache did not hold (read from the online store and scored)",
            registry=recorded,
        )
        self.cache_errors = Counter(
            "flywheel_cache_errors_total",
            "Failed prediction cache operations (Redis unreachable or slow, an unreadable value); "
            "answered as misses",
            registry=recorded,
        )
        self.cache_entries = Gauge(
            "flywheel_cache_entries",
            "Prediction cache entries (local: held in the worker's LRU; redis: written by the worker, "
            "TTL not run out)",
            registry=recorded,
            multiprocess_mode="livesum",
        )

    def update_drift(self, reports: Path) -> None:
        """Export the newest ``reports/drift-*.json`` (names sort by time) when it changed."""
        self.reports.update_drift(reports)

    def update_performance(self, reports: Path) -> None:
        """Export the newest ``reports/performance-*.json`` when it changed."""
        self.reports.update_performance(reports)

    def served(self, version: str, previous: str | None) -> None:
        """``version`` is served now, in place of ``previous``."""
        if previous is not None and previous != version:
            if self.multiprocess:  # a removed label value would stay in this worker's file
                self.model_info.labels(previous).set(0)
            else:  # prometheus_client warns by the environment variable, which importing Feast sets
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    self.model_info.remove(previous)
        self.model_info.labels(version).set(1)

    def stopped(self) -> None:
        """The service stops: with several workers, this one's live gauges leave the merged figures."""
        if self.multiprocess:
            multiprocess.worker_stopped()


class WorkersCollector(MultiProcessCollector):
    """The merged ``flywheel_*`` metrics of every live and past worker. Libraries the workers load
    (Feast) record metrics of their own in the same files; they are left out, as a single process
    leaves them out by exporting its own registry only."""

    def collect(self) -> Any:
        multiprocess.forget_dead_workers(Path(self._path))
        return [metric for metric in super().collect() if metric.name.startswith("flywheel_")]


class PredictionLogCollector(Collector):
    """The prediction log writer's state, read at scrape time (one process)."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def collect(self) -> Iterator[Any]:
        log = self.log()
        if log is None:
            return
        yield GaugeMetricFamily("flywheel_prediction_log_up", LOG_UP, value=int(log.healthy))
        yield GaugeMetricFamily("flywheel_prediction_log_pending", LOG_PENDING, value=log.pending)
        for name, help_ in LOG_COUNTS:
            yield CounterMetricFamily(f"flywheel_prediction_log_{name}", help_, value=getattr(log, name))


class LogFigures:
    """The prediction log writer's state as multiprocess metrics (several workers), updated by the
    writer thread after each pass (``PredictionLog``'s ``observe``): another worker's writer cannot be
    read at scrape time. Counts are added as deltas, so the merged counters sum every worker's writer."""

    def __init__(self) -> None:
        # made at the writer's first report: a gauge holds 0 from its creation, which would read as a
        # failing writer until then
        self.up: Gauge | None = None
        self.pending: Gauge | None = None
        self.counts = {
            name: Counter(f"flywheel_prediction_log_{name}", help_, registry=None)
            for name, help_ in LOG_COUNTS
        }
        self.seen = dict.fromkeys(self.counts, 0)

    def observe(self, log: Any) -> None:
        """Called from the writer thread only (no two calls at once)."""
        if self.up is None or self.pending is None:
            self.up = Gauge("flywheel_prediction_log_up", LOG_UP, registry=None, multiprocess_mode="livemin")
            self.pending = Gauge(
                "flywheel_prediction_log_pending", LOG_PENDING, registry=None, multiprocess_mode="livesum"
            )
        self.up.set(int(log.healthy))
        self.pending.set(log.pending)
        for name, counter in self.counts.items():
            value, seen = getattr(log, name), self.seen[name]
            if value != seen:
                counter.inc(value - seen if value > seen else value)  # smaller: a new writer
                self.seen[name] = value
