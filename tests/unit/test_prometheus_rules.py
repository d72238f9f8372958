"""Prometheus and Grafana files under ``deploy/``: promtool checks the scrape configs and the alerting
rules and runs the rules' unit tests (``rules_test.yml``); every alert has a firing and a quiet case;
the Grafana provisioning and dashboard are well formed; and every metric name in a rule or a panel
is one the service exports (read from :class:`flywheel.serving.metrics.Metrics`; the live check
against a running service is in ``tests/integration/test_prometheus.py``)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.servers import ensure_apt_package

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "flywheel.json"
REQUIRED_ALERTS = {
    "FlywheelHighErrorRate",
    "FlywheelHighLatency",
    "FlywheelNoPredictions",
    "FlywheelModelReloadFailed",
    "FlywheelDatasetDrift",
    "FlywheelPerformanceBelowThreshold",
    "FlywheelPredictionLogDown",
}
PROMETHEUS_SERIES = {"up"}  # written by Prometheus itself, not by the service
DASHBOARD_VARIABLES = {"job", "instance", "__rate_interval"}


# --- PromQL metric names -------------------------------------------------------------------------

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(
    r"\$\{?\w+\}?"  # a Grafana variable
    r"|0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*|\.\d+"  # numbers, durations
    r"|[A-Za-z_:][\w:]*"  # identifiers
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions or
    aggregations (followed by ``(``), keywords, label names (inside ``{}`` or the label lists of
    ``by``/``without``/``on``/``ignoring``/``group_*``), strings, durations or Grafana variables."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)  # strings gone: braces hold label matchers only
    text = _BRACKETS.sub("", text)  # ranges and subqueries: [5m], [$__rate_interval], [1h:1m]
    text = _LABEL_LIST.sub(" ", text)  # `sum by (le) (x)` reads as `sum (x)`: a call
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group()
        if not (token[0].isalpha() or token[0] in "_:") or token.lower() in _KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end() :]):  # a function or an aggregation
            continue
        names.add(token)
    return names


def test_metric_names_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (job, le) (rate(flywheel_request_seconds_bucket{endpoint=~"/v1/.+",'
        ' le!="x"}[5m]))) > 0.05'
    ) == {"flywheel_request_seconds_bucket"}
    assert metric_names("a / on (job, metric) group_left(kind) b offset 15m > bool 1e-3") == {"a", "b"}
    assert metric_names(
        'sum(rate(x_total{job="$job", instance=~"$instance"}[$__rate_interval])) by (le) / Inf'
    ) == {"x_total"}
    assert metric_names("count(max by (column) (d{c='a(b)'}) == 1) or vector(0) unless up") == {"d", "up"}
    assert metric_names("max_over_time(g[1h:1m]) and on() absent(h)") == {"g", "h"}
    assert metric_names("sum without (instance) (rate(c[1h30m] offset 1d))") == {"c"}


# --- what the service exports --------------------------------------------------------------------


def exported_names() -> set[str]:
    """Sample names of every metric family the service's :class:`Metrics` declares: counters as
    ``_total``, histograms as ``_bucket``/``_sum``/``_count``, gauges as they are."""
    from flywheel.serving.metrics import Metrics

    log = SimpleNamespace(healthy=True, pending=0, written=0, write_errors=0, rejected=0, dropped=0)
    names = set()
    for family in Metrics(lambda: log).registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def family_of(name: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", name)


# --- Prometheus ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_apt_package("promtool", "prometheus")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_config_and_rules_and_runs_the_rule_tests(promtool: str) -> None:
    for args in (
        ("check", "config", str(PROMETHEUS / "prometheus.yml")),  # resolves rule_files beside it
        ("check", "rules", str(PROMETHEUS / "rules.yml")),
        ("test", "rules", str(PROMETHEUS / "rules_test.yml")),
    ):
        done = _run(promtool, *args)
        assert done.returncode == 0 and "SUCCESS" in done.stdout, (args, done.stdout, done.stderr)


def test_the_compose_scrape_config(promtool: str) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "flywheel" and job.get("metrics_path", "/metrics") == "/metrics"
    assert [t for group in job["static_configs"] for t in group["targets"]] == ["flywheel:8000"]


def test_the_kubernetes_scrape_config(promtool: str, tmp_path: Path) -> None:
    """Pods found by their prometheus.io/* annotations. Debian's promtool has no Kubernetes
    discovery: the file is checked with the discovery swapped for a static target."""
    config = yaml.safe_load((PROMETHEUS / "prometheus-kubernetes.yml").read_text())
    assert config["rule_files"] == ["rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "flywheel" and job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabel = job["relabel_configs"]
    sources = {label for rule in relabel for label in rule.get("source_labels", [])}
    for annotation in ("scrape", "port", "path", "scheme"):
        assert f"__meta_kubernetes_pod_annotation_prometheus_io_{annotation}" in sources
    keep = relabel[0]
    assert keep["action"] == "keep" and keep["regex"] == "true"
    # the port rewrite: the pod's address with the annotated port
    (port_rule,) = [r for r in relabel if r.get("target_label") == "__address__"]
    joined = "10.1.2.3:8080;8000"
    assert re.fullmatch(port_rule["regex"], joined) and re.sub(
        port_rule["regex"], port_rule["replacement"].replace("$", "\\"), joined
    ) == ("10.1.2.3:8000")
    # the service's pods are targets; another pod annotated for scraping is not (it would be
    # job="flywheel" too, and a down one would fire FlywheelServiceDown)
    serve = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    template = serve["spec"]["template"]["metadata"]
    assert _kept(relabel, _pod_meta(template["labels"], template["annotations"]))
    other = {"app.kubernetes.io/name": "postgres", "app": "db"}
    assert not _kept(relabel, _pod_meta(other, template["annotations"]))
    assert not _kept(relabel, _pod_meta(template["labels"], {}))  # not annotated
    assert not _kept(relabel, _pod_meta(template["labels"], template["annotations"], phase="Pending"))
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": ["10.1.2.3:8000"]}]
    (tmp_path / "rules.yml").write_text((PROMETHEUS / "rules.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = _run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def _pod_meta(labels: dict[str, str], annotations: dict[str, str], phase: str = "Running") -> dict[str, str]:
    """The ``__meta_kubernetes_pod_*`` labels Prometheus's pod discovery gives a pod."""
    meta = {"__meta_kubernetes_pod_phase": phase}
    for prefix, values in (("label", labels), ("annotation", annotations)):
        for name, value in values.items():
            meta[f"__meta_kubernetes_pod_{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"] = value
    return meta


def _kept(relabel: list[dict[str, Any]], meta: dict[str, str]) -> bool:
    """Whether the keep and drop rules of ``relabel`` keep a target (the other actions only rename)."""
    for rule in relabel:
        if rule.get("action") not in ("keep", "drop"):
            continue
        value = rule.get("separator", ";").join(meta.get(name, "") for name in rule["source_labels"])
        matched = re.fullmatch(rule.get("regex", "(.*)"), value) is not None
        if matched != (rule["action"] == "keep"):
            return False
    return True


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_has_a_for_a_severity_annotations_and_known_metrics() -> None:
    rules = _rules()
    alerts = [rule["alert"] for rule in rules]
    assert set(alerts) >= REQUIRED_ALERTS and len(alerts) == len(set(alerts))
    known = exported_names() | PROMETHEUS_SERIES
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        # the annotation names the value (or, for a down target, the instance)
        assert any("$value" in text or "$labels.instance" in text for text in rule["annotations"].values()), (
            rule["alert"]
        )
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, (rule["alert"], unknown)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())
    assert cases["rule_files"] == ["rules.yml"]
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for test in cases["tests"]:
        for case in test.get("alert_rule_test", []):
            counts = firing if case.get("exp_alerts") else quiet
            counts[case["alertname"]] = counts.get(case["alertname"], 0) + 1
            for alert in case.get("exp_alerts") or []:
                assert alert["exp_labels"].get("severity"), case
                assert {"summary", "description"} <= set(alert["exp_annotations"]), case
    for alert in (rule["alert"] for rule in _rules()):
        assert firing.get(alert), f"{alert} has no case where it fires"
        assert quiet.get(alert), f"{alert} has no case where it stays quiet"


# --- Grafana -------------------------------------------------------------------------------------


def test_grafana_provisioning() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "flywheel.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def dashboard_exprs() -> list[str]:
    """Every ``expr`` in the dashboard: panel targets and annotation queries."""
    return _exprs(json.loads(DASHBOARD.read_text()))


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for key, value in node.items() if key != "expr" for e in _exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in _exprs(value)]
    return []


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "flywheel" and dashboard["title"]
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    titles = [p["title"] for p in panels]
    assert all(titles) and len(titles) == len(set(titles))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        covered = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus" and target["expr"].strip(), panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"job", "instance"}
    assert all(v["datasource"]["uid"] == "prometheus" for v in variables.values())
    # the choices come from a series every scrape writes, so a fresh deployment (no model loaded yet,
    # no traffic) shows its targets instead of an empty dashboard
    for name, variable in variables.items():
        query = variable["query"]["query"]
        assert variable["definition"] == query
        selector, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query).groups()
        assert label == name and metric_names(selector) <= PROMETHEUS_SERIES, query
    assert 'job="$job"' in variables["instance"]["query"]["query"]
    for expr in _exprs(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= DASHBOARD_VARIABLES, (expr, used - DASHBOARD_VARIABLES)
        assert 'job="$job"' in expr or "up{" in expr, expr  # every query follows the job variable


def test_the_dashboard_shows_every_exported_metric_and_nothing_else() -> None:
    exported = exported_names()
    shown = {name for expr in dashboard_exprs() for name in metric_names(expr)}
    assert shown - exported - PROMETHEUS_SERIES == set()
    missing = {family_of(name) for name in exported} - {family_of(name) for name in shown}
    assert not missing, f"no panel shows {sorted(missing)}"
