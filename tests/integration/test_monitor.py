"""Drift monitoring against the champion's reference profile, stored with its MLflow run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from flywheel.config import FlywheelConfig
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
    assert len(json.dumps(profile)) < 60_000  # fixed size: quantiles and bins, no rows


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
