"""Drift monitoring against the champion's reference profile, stored with its MLflow run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.monitoring import monitor
from flywheel.training.train import load_dataset
from flywheel.workdir import Workdir
from tests.servers import flywheel_command


def test_the_profile_round_trips_through_mlflow(
    served_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, workdir.root)
    version, profile = monitor.champion_profile(training_config, workdir)
    data = load_dataset(workdir)
    assert version == "1" and set(profile["columns"]) == set(data.features)
    assert profile["rows"] == len(data.splits["train"]) and profile["prediction"]["n"] == profile["rows"]
    assert len(json.dumps(profile)) < 150_000  # fixed size: quantiles, percentile means, bins; no rows


def test_monitor_drift_command_reports_every_feature(
    served_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, workdir.root)
    result = subprocess.run(
        flywheel_command(training_config, workdir, tmp_path, "monitor", "drift"),
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode in (0, 1), (
        result.stderr
    )  # 1 means dataset drift, which is a finding, not a failure
    assert "dataset drift:" in result.stdout and "churn_probability" in result.stdout
    (report_path,) = workdir.reports.glob("drift-*.json")
    report = json.loads(report_path.read_text())
    assert {c["column"] for c in report["columns"]} == set(load_dataset(workdir).features)
    assert report["champion_version"] == "1" and report["prediction"]["test"] in ("ks", "wasserstein")


def _cli(config: FlywheelConfig, workdir: Workdir, folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        flywheel_command(config, workdir, folder, *args),
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )


def test_traffic_then_performance_and_retrain_check_from_the_cli(
    served_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, workdir.root)
    traffic = _cli(
        training_config, workdir, tmp_path, "simulate", "traffic", "--days", "112", "--per-date", "30"
    )
    assert traffic.returncode == 0, traffic.stderr
    assert "480 predictions over 16 simulated days" in traffic.stdout and "v1: 480" in traffic.stdout

    performance = _cli(training_config, workdir, tmp_path, "monitor", "performance")
    assert performance.returncode == 0, performance.stderr
    (report_path,) = workdir.reports.glob("performance-*.json")
    assert [
        (a["arm"], a["version"], a["predictions"]) for a in json.loads(report_path.read_text())["arms"]
    ] == [("-", "1", 480)]
    periods = json.loads(report_path.read_text())["periods"]
    statuses = [p["status"] for p in periods]
    # 16 weekly days back from the newest snapshot: the last 60 days' labels are not observed yet
    assert len(periods) == 16 and statuses[0] == "observed" and statuses[-1] == "pending"
    assert statuses == sorted(statuses, key=["observed", "partial", "pending"].index)
    assert all(p["roc_auc"] > 0.6 for p in periods if p["status"] == "observed")
    assert all(p["roc_auc"] is None and p["labelled"] == 0 for p in periods if p["status"] == "pending")
    assert "pending" in performance.stdout
    by_arm = _cli(training_config, workdir, tmp_path, "monitor", "performance", "--by-arm")
    assert by_arm.returncode == 0, by_arm.stderr
    assert "By rollout arm" in by_arm.stdout and "480" in by_arm.stdout.split("By rollout arm")[1]

    drift = _cli(training_config, workdir, tmp_path, "monitor", "drift", "--source", "log", "--window", "1d")
    assert drift.returncode in (0, 1), drift.stderr
    assert "prediction log" in drift.stdout
    alerts = workdir.reports / "alerts.jsonl"
    kinds = [json.loads(line)["kind"] for line in alerts.read_text().splitlines()] if alerts.exists() else []
    assert kinds == (["drift"] if drift.returncode == 1 else [])  # dataset drift is alerted

    check = _cli(training_config, workdir, tmp_path, "retrain", "--check-only")
    assert check.returncode == 0, check.stderr
    assert "Retrain triggers" in check.stdout and "decision:" in check.stdout
    (decision_path,) = workdir.reports.glob("retrain-*.json")
    decision = json.loads(decision_path.read_text())
    assert decision["check_only"] and decision["pipeline_run_id"] is None
    assert decision["champion"] == decision["champion_after"] == "1"
    bad = _cli(training_config, workdir, tmp_path, "monitor", "drift", "--window", "30d")
    assert bad.returncode == 2 and "--source log" in bad.stderr
    backwards = _cli(
        training_config,
        workdir,
        tmp_path,
        "monitor",
        "drift",
        "--source",
        "log",
        "--from",
        "2025-02-01",
        "--to",
        "2025-01-01",
    )
    assert backwards.returncode == 2 and "must be before --to" in backwards.stderr


def test_evidently_export_reads_the_champions_training_split(
    served_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, workdir.root)
    report, meta, path = monitor.drift(training_config, workdir, evidently=True)
    exported = Path(meta["evidently_report"])
    assert exported.exists() and exported.suffix == ".html" and exported.parent == workdir.reports
    page = exported.read_text()
    assert "Drifted Columns" in page and all(c.column in page for c in report.columns)
    assert json.loads(path.read_text())["evidently_report"] == str(exported)
    shutil.rmtree(workdir.datasets)
    with pytest.raises(FlywheelError, match=r"training set .* is gone"):
        monitor.drift(training_config, workdir, evidently=True)
