"""A real Prometheus scraping a real ``flywheel serve`` with ``deploy/prometheus/rules.yml`` loaded,
and the Grafana dashboard's PromQL checked against the live service.

One service and one Prometheus (scraping every second, ``rules.yml`` loaded) are shared by the
module; each test sends its own traffic, so they pass in any order. The second test makes simulated
traffic, a performance report and a drift report first, so every gauge on ``/metrics`` is filled."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.features import snapshots
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN, call, flywheel_command, prometheus_server, service
from tests.unit.test_prometheus_rules import (
    DASHBOARD,
    PROMETHEUS,
    PROMETHEUS_SERIES,
    dashboard_exprs,
    metric_names,
)

# filled by multiclass use cases only: the churn service here is binary and has no sample of it
# (tests/unit/test_prometheus_rules.py checks the name against the metrics the service declares)
MULTICLASS_ONLY = {"flywheel_predicted_class_total"}


@dataclass
class Stack:
    base: str  # the service
    prometheus: str
    workdir: Workdir
    config: FlywheelConfig
    folder: Path


@pytest.fixture(scope="module")
def stack(
    served_workdir: Workdir, training_config: FlywheelConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("prometheus-stack")
    shutil.copytree(served_workdir.root, folder / "wd")
    workdir = Workdir.at(folder / "wd")
    config = apply_overrides(
        training_config,
        {
            "serving.admin_token": ADMIN_TOKEN,
            "serving.poll_seconds": 3600,
            "serving.log_flush_seconds": 0.1,
        },
    )
    with service(workdir, config, folder, log=folder / "service.log") as (base, _):
        scrape = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROMETHEUS / "rules.yml")],
            "scrape_configs": [
                {"job_name": "flywheel", "static_configs": [{"targets": [base.removeprefix("http://")]}]}
            ],
        }
        with prometheus_server(folder / "prometheus", scrape) as prometheus:
            yield Stack(base, prometheus, workdir, config, folder)


def api(prometheus: str, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer; fails on an error answer."""
    url = f"{prometheus}{path}?{urllib.parse.urlencode(params)}" if params else f"{prometheus}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        answer = json.load(error)
    assert answer["status"] == "success", (path, params, answer)
    return answer["data"]


def query(prometheus: str, promql: str) -> list[dict]:
    return api(prometheus, "/api/v1/query", query=promql)["result"]


def customers(workdir: Workdir, n: int) -> list[int]:
    return pq.read_table(snapshots.snapshot_files(workdir)[-1]).column("customer_id").to_pylist()[:n]


def test_prometheus_scrapes_the_service_and_evaluates_the_rules(stack: Stack) -> None:
    ids = customers(stack.workdir, 5)
    rate = 'sum(rate(flywheel_requests_total{job="flywheel", endpoint="/v1/predict", status="200"}[30s]))'
    deadline = time.monotonic() + 30
    while True:  # traffic while polling: a counter's first sample is no increase
        for customer in ids:
            assert call(stack.base, "POST", "/v1/predict", {"customer_id": customer})[0] == 200
        result = query(stack.prometheus, rate)
        if result and float(result[0]["value"][1]) > 0:
            break
        assert time.monotonic() < deadline, f"no /v1/predict rate in Prometheus: {result}"
        time.sleep(0.5)

    (target,) = api(stack.prometheus, "/api/v1/targets")["activeTargets"]
    assert target["labels"]["job"] == "flywheel" and target["health"] == "up", target
    assert target["scrapeUrl"] == f"{stack.base}/metrics" and not target["lastError"]
    assert float(query(stack.prometheus, 'up{job="flywheel"}')[0]["value"][1]) == 1
    served = query(stack.prometheus, 'max by (version) (flywheel_model_info{job="flywheel"}) > 0')
    assert [s["metric"]["version"] for s in served] == ["1"]

    # every rule of rules.yml loaded and evaluated against the live series without an error
    expected = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    deadline = time.monotonic() + 10
    while True:
        rules = [r for g in api(stack.prometheus, "/api/v1/rules")["groups"] for r in g["rules"]]
        if all(r["lastEvaluation"] > "2000" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert {r["name"] for r in rules} == expected
    for rule in rules:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule
    # a healthy service that has just served: nothing fires (drift and performance may be
    # pending if the other test's reports found them, but their `for` has not passed)
    firing = [a for a in api(stack.prometheus, "/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert firing == []


def _cli(stack: Stack, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        flywheel_command(stack.config, stack.workdir, stack.folder, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(stack.folder)},
    )


def _finish(process: subprocess.Popen, codes: tuple[int, ...] = (0,)) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode in codes, (process.args[-3:], out[-2000:], err[-2000:])
    return out


def _live_names(stack: Stack) -> set[str]:
    """Sample names on the service's ``/metrics`` (kept as ``metrics.txt`` beside the service log)."""
    status, text = call(stack.base, "GET", "/metrics")
    assert status == 200
    (stack.folder / "metrics.txt").write_text(text)
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_dashboard_and_rule_metric_is_on_the_live_metrics(stack: Stack) -> None:
    # labelled traffic, a performance report and a drift report, so every gauge is filled
    traffic = _finish(
        _cli(stack, "simulate", "traffic", "--url", stack.base, "--days", "112", "--per-date", "15")
    )
    assert "predictions over 16 simulated days" in traffic
    deadline = time.monotonic() + 20
    while True:  # the log writer has flushed what it acknowledged
        pending = re.search(
            r"^flywheel_prediction_log_pending (\S+)$", str(call(stack.base, "GET", "/metrics")[1]), re.M
        )
        if (pending and float(pending.group(1)) == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    performance = _cli(stack, "monitor", "performance")
    drift = _cli(stack, "monitor", "drift")
    _finish(performance)
    _finish(drift, (0, 1))  # 1: dataset drift found, a finding
    assert list(stack.workdir.reports.glob("performance-*.json"))
    assert list(stack.workdir.reports.glob("drift-*.json"))

    live = _live_names(stack) | PROMETHEUS_SERIES
    missing: dict[str, list[str]] = {}
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, f"no metric in {expr}"
        if names - live - MULTICLASS_ONLY:
            missing[expr] = sorted(names - live - MULTICLASS_ONLY)
    for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]:
        for rule in group["rules"]:
            if metric_names(rule["expr"]) - live:
                missing[rule["alert"]] = sorted(metric_names(rule["expr"]) - live)
    assert not missing, (
        f"not on the live /metrics ({stack.folder / 'metrics.txt'}): {json.dumps(missing, indent=1)}"
    )

    # the reports' gauges reach Prometheus: the performance alert's two sides are there
    for promql in (
        'flywheel_performance{job="flywheel", kind="realized", metric="roc_auc"}',
        'flywheel_performance_threshold{job="flywheel", metric="roc_auc"}',
        'flywheel_drift_score{job="flywheel"}',
    ):
        deadline = time.monotonic() + 10
        while not query(stack.prometheus, promql):
            assert time.monotonic() < deadline, f"Prometheus has no {promql}"
            time.sleep(0.3)

    # every query is valid PromQL for the live Prometheus, variables substituted, and every panel
    # shows data (but the multiclass one); an annotation query may find nothing to mark
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panel_exprs = {target["expr"] for panel in panels for target in panel.get("targets", [])}
    empty = []
    for expr in dashboard_exprs():
        promql = expr.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$job", "flywheel")
        if (
            not query(stack.prometheus, promql)
            and expr in panel_exprs
            and not metric_names(expr) & MULTICLASS_ONLY
        ):
            empty.append(expr)
    assert not empty, f"panels without data: {empty}"
