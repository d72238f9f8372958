"""The service's metrics: the newest performance report as gauges, and figures that add up over
worker processes in prometheus_client's multiprocess mode (simulated here with one value class per
"worker", as prometheus_client's own tests do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import Counter, generate_latest, values
from prometheus_client.values import MultiProcessValue

from flywheel.serving import multiprocess
from flywheel.serving.metrics import Metrics


def period(start: str, **figures: float | None) -> dict:
    names = ("roc_auc", "pr_auc", "brier", "accuracy", "macro_f1", "log_loss", "mean_probability")
    return {"start": start, "end": start, "labelled": 10, **dict.fromkeys(names), **figures}


def write_report(reports: Path, stamp: str, periods: list[dict]) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"performance-{stamp}.json").write_text(json.dumps({"periods": periods}))


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_the_newest_labelled_period_of_the_newest_performance_report_is_exported(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    metrics = Metrics(performance_metric="roc_auc", performance_bound=0.75)
    metrics.update_performance(reports)  # no reports folder yet: nothing, and no error
    text = exposition(metrics)
    assert "# TYPE flywheel_performance gauge" in text and "flywheel_performance{" not in text
    assert 'flywheel_performance_threshold{metric="roc_auc"} 0.75' in text

    write_report(
        reports,
        "20240101T000000000000",
        [
            period("2024-01-01", roc_auc=0.70, brier=0.2),
            period("2024-01-08", roc_auc=0.81, pr_auc=0.4, brier=0.15, mean_probability=0.3),
            period("2024-01-15"),  # pending: no labels yet
        ],
    )
    metrics.update_performance(reports)
    text = exposition(metrics)
    assert 'flywheel_performance{kind="realized",metric="roc_auc"} 0.81' in text
    assert 'flywheel_performance{kind="realized",metric="pr_auc"} 0.4' in text
    assert 'flywheel_performance{kind="realized",metric="brier"} 0.15' in text
    assert 'metric="accuracy"' not in text and 'metric="mean_probability"' not in text

    # a newer report replaces every figure; a report is read once
    write_report(reports, "20240201T000000000000", [period("2024-01-22", roc_auc=0.6)])
    metrics.update_performance(reports)
    text = exposition(metrics)
    assert 'flywheel_performance{kind="realized",metric="roc_auc"} 0.6' in text and "pr_auc" not in text
    assert metrics.reports.performance_report == "performance-20240201T000000000000.json"


def test_estimated_figures_are_exported_beside_the_realized_ones_and_per_period(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    metrics = Metrics(performance_metric="roc_auc", performance_bound=0.75)
    write_report(
        reports,
        "1",
        [
            period("2024-01-01", roc_auc=0.80, estimated={"roc_auc": 0.79, "f1": 0.6}),
            period("2024-01-08", estimated={"roc_auc": 0.71, "f1": 0.5}),  # pending: an estimate only
        ],
    )
    metrics.update_performance(reports)
    text = exposition(metrics)
    assert 'flywheel_performance{kind="realized",metric="roc_auc"} 0.8' in text
    assert 'flywheel_performance{kind="estimated",metric="roc_auc"} 0.71' in text  # the newest period's
    assert 'flywheel_performance_period{kind="estimated",metric="roc_auc",period="2024-01-01"} 0.79' in text
    assert 'flywheel_performance_period{kind="realized",metric="roc_auc",period="2024-01-01"} 0.8' in text
    assert 'flywheel_performance_period{kind="estimated",metric="f1",period="2024-01-08"} 0.5' in text
    assert 'kind="realized",metric="roc_auc",period="2024-01-08"' not in text


def test_a_multiclass_trigger_metric_and_a_report_without_it(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    metrics = Metrics(performance_metric="macro_f1", performance_bound=0.5)
    write_report(reports, "1", [period("2024-01-01", roc_auc=0.9, accuracy=0.7, macro_f1=0.55, log_loss=0.8)])
    metrics.update_performance(reports)
    text = exposition(metrics)
    for metric, value in (("macro_f1", 0.55), ("accuracy", 0.7), ("log_loss", 0.8), ("roc_auc", 0.9)):
        assert f'flywheel_performance{{kind="realized",metric="{metric}"}} {value}' in text
    assert 'flywheel_performance_threshold{metric="macro_f1"} 0.5' in text
    write_report(reports, "2", [period("2024-01-01", roc_auc=0.9)])  # no macro-F1 anywhere
    metrics.update_performance(reports)
    assert "flywheel_performance{" not in exposition(metrics)
    assert "flywheel_performance_threshold{" not in exposition(Metrics(performance_bound=None))


class Workers:
    """Worker processes simulated in one: metric values (a labelled child is made at its first
    ``labels()`` call) go to the files of the worker whose value class is current."""

    def __init__(self) -> None:
        self.classes: dict[int, type] = {}

    def act(self, pid: int) -> None:
        """What follows runs "in" worker ``pid``."""
        values.ValueClass = self.classes.setdefault(pid, MultiProcessValue(lambda: pid))

    def start(self, pid: int) -> Metrics:
        self.act(pid)
        return Metrics(performance_bound=0.75)


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workers:
    """Multiprocess mode with its files in ``tmp_path``."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    monkeypatch.setenv(multiprocess.ENV, str(folder))
    monkeypatch.setenv(multiprocess.WORKERS_ENV, "2")
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    return Workers()


def fake_log(written: int, healthy: bool = True) -> SimpleNamespace:
    return SimpleNamespace(written=written, write_errors=0, rejected=0, dropped=0, pending=2, healthy=healthy)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_counters_histograms_and_log_counts_add_up_over_workers(workers: Workers, tmp_path: Path) -> None:
    first, second = workers.start(os.getpid()), workers.start(os.getppid())
    assert first.multiprocess and first.log_figures is not None
    for pid, metrics, requests in ((os.getpid(), first, 3), (os.getppid(), second, 2)):
        workers.act(pid)
        for _ in range(requests):
            metrics.requests.labels("/v1/predict", "200").inc()
            metrics.latency.labels("/v1/predict").observe(0.002)
        metrics.probability.observe(0.3)
        metrics.log_figures.observe(fake_log(requests, healthy=metrics is first))
    workers.act(os.getpid())
    first.log_figures.observe(fake_log(5))  # counts are cumulative: the delta is added
    Counter("feast_online_features_request", "a library's own", registry=None).inc()  # same files
    write_report(tmp_path / "reports", "1", [period("2024-01-01", roc_auc=0.8)])
    second.update_performance(tmp_path / "reports")
    folder = Path(os.environ[multiprocess.ENV])
    assert {p.name for p in folder.glob("counter_*")} == {
        f"counter_{os.getpid()}.db",
        f"counter_{os.getppid()}.db",
    }
    for metrics in (first, second):  # whichever worker answers the scrape
        text = exposition(metrics)
        assert 'flywheel_requests_total{endpoint="/v1/predict",status="200"} 5.0' in text
        assert 'flywheel_request_seconds_count{endpoint="/v1/predict"} 5.0' in text
        assert 'flywheel_request_seconds_bucket{endpoint="/v1/predict",le="0.0025"} 5.0' in text
        assert "flywheel_predicted_probability_count 2.0" in text
        assert "flywheel_prediction_log_written_total 7.0" in text
        assert "flywheel_prediction_log_up 0.0" in text  # the minimum: one writer is failing
        assert "flywheel_prediction_log_pending 4.0" in text
        assert 'flywheel_performance_threshold{metric="roc_auc"} 0.75' in text
        assert "feast_" not in text
    # each worker exports the performance report it read (every worker reads the same files)
    assert 'flywheel_performance{kind="realized",metric="roc_auc"} 0.8' in exposition(second)


def test_the_served_version_across_workers_during_and_after_a_swap(workers: Workers) -> None:
    first, second = workers.start(os.getpid()), workers.start(os.getppid())
    workers.act(os.getpid())
    first.served("1", None)
    workers.act(os.getppid())
    second.served("1", None)
    workers.act(os.getpid())
    first.served("2", "1")  # the first worker swapped; the second still serves version 1
    text = exposition(first)
    assert 'flywheel_model_info{version="1"} 1.0' in text and 'flywheel_model_info{version="2"} 1.0' in text
    workers.act(os.getppid())
    second.served("2", "1")
    text = exposition(second)
    assert 'flywheel_model_info{version="1"} 0.0' in text and 'flywheel_model_info{version="2"} 1.0' in text


def test_a_dead_workers_live_gauges_leave_and_its_counts_stay(workers: Workers) -> None:
    gone_pid = dead_pid()
    alive, gone = workers.start(os.getpid()), workers.start(gone_pid)
    gone.served("1", None)
    gone.requests.labels("/v1/predict", "200").inc(7)
    gone.log_figures.observe(fake_log(7, healthy=False))
    workers.act(os.getpid())
    alive.served("2", None)
    text = exposition(alive)
    assert 'flywheel_model_info{version="1"}' not in text and 'flywheel_model_info{version="2"} 1.0' in text
    assert 'flywheel_requests_total{endpoint="/v1/predict",status="200"} 7.0' in text
    assert "flywheel_prediction_log_written_total 7.0" in text
    assert "flywheel_prediction_log_up" not in text  # no live writer has reported
    alive.stopped()  # a clean stop removes the worker's own live gauges
    assert "flywheel_model_info{" not in exposition(alive)


def test_an_in_process_service_exports_its_own_registry_whatever_the_value_class(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a process that imported Feast before prometheus_client (a test session, the demo)
    records values in files; its in-process service is one process and exports its registry, every
    declared family included."""
    monkeypatch.delenv(multiprocess.WORKERS_ENV)
    metrics = workers.start(os.getpid())
    assert not metrics.multiprocess and metrics.log_figures is None
    metrics.requests.labels("/v1/predict", "200").inc()
    text = exposition(metrics)
    assert 'flywheel_requests_total{endpoint="/v1/predict",status="200"} 1.0' in text
    assert "# TYPE flywheel_request_seconds histogram" in text and "# TYPE flywheel_model_info gauge" in text


def test_the_metrics_folder_of_a_service_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder inherited from the environment is never used: importing Feast sets one in whatever
    process imports it (this one included), and a service started from there mixed its counts with
    that process's."""
    import feast  # noqa: F401  (sets PROMETHEUS_MULTIPROC_DIR in this process when not set)

    inherited = os.environ[multiprocess.ENV]
    monkeypatch.setenv(multiprocess.ENV, inherited)  # restored after the test
    with multiprocess.metrics_dir(1) as folder:
        assert folder is None and multiprocess.ENV not in os.environ  # one worker: in memory
    os.environ[multiprocess.ENV] = inherited
    assert not Metrics().multiprocess  # files, but no workers: this process's own registry
    with multiprocess.metrics_dir(2) as folder:
        assert os.environ[multiprocess.ENV] == str(folder) != inherited
        assert os.environ[multiprocess.WORKERS_ENV] == "2"
        assert folder.is_dir() and not list(folder.iterdir())
    assert not folder.exists() and multiprocess.ENV not in os.environ
    assert multiprocess.WORKERS_ENV not in os.environ
    assert Path(inherited).is_dir()  # someone else's: left alone
