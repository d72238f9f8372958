"""Credit score end to end (seed 003, multiclass): the pipeline with the templated extraction for a
logical date, multiclass gates and comparison, the service's class probabilities and per-class
counter, the prediction log, drift of the predicted class and per-period multiclass performance."""

from __future__ import annotations

import json
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig, default_config
from flywheel.data import ops
from flywheel.errors import DataError
from flywheel.features import ops as feature_ops
from flywheel.pipeline.context import StepContext
from flywheel.pipeline.runner import run_pipeline
from flywheel.pipeline.steps import extract
from flywheel.workdir import Workdir

SMALL = {
    "data.generator.customers": 600,
    "data.generator.start": date(2024, 1, 1),
    "data.generator.end": date(2024, 9, 1),
    "data.extract.lookback_months": 6,
    "registry.gates.max_p99_latency_ms": 60_000.0,
    "registry.gates.min_metrics": {"macro_f1": 0.5},
    "registry.gates.max_metrics": {"log_loss": 0.9},
    "registry.compare_metric": "log_loss",
    "training.model_type": "catboost",
    "training.scale": "robust",
    "training.params": {"iterations": 80},
    "training.tuning.method": "grid",
    "training.tuning.metric": "log_loss",
    "training.tuning.grid": {"depth": [4, 6]},
}
LOGICAL_DATE = date(2024, 8, 20)


def credit_config(**overrides: object) -> FlywheelConfig:
    return default_config("credit", **{**SMALL, **overrides})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[FlywheelConfig, Workdir, dict]:
    """A small generated credit lake and a champion trained on the records extracted for one date."""
    config = credit_config()
    workdir = Workdir.at(tmp_path_factory.mktemp("credit") / "wd")
    ops.generate(config, workdir)
    feature_ops.build(config, workdir)
    record = run_pipeline(config, workdir, logical_date=LOGICAL_DATE)
    assert record.status == "SUCCEEDED", [(s.name, s.error) for s in record.steps if s.error]
    return config, workdir, {s.name: s.outputs for s in record.steps}


def test_the_extraction_for_the_logical_date_chooses_the_training_rows(served) -> None:
    """The dataset holds exactly the records of (ds − 6 months, ds] the extraction returned, each with
    its label; the window table in the workdir holds the logical date."""
    _, workdir, outputs = served
    extracted = outputs["extract"]
    assert extracted["logical_date"] == LOGICAL_DATE.isoformat() and extracted["source"] == "duckdb"
    rows = pd.concat(
        pq.read_table(Path(outputs["data_load"]["dataset"]) / f"{s}.parquet").to_pandas()
        for s in ("train", "valid", "test")
    )
    chosen = pq.read_table(extracted["labels"]).to_pandas()
    assert len(chosen) == int(extracted["label_rows"]) == int(extracted["rows"]) > 1000
    assert set(rows["id"]) <= set(chosen["id"])
    times = pd.to_datetime(chosen["label_timestamp"], utc=True)
    low = pd.Timestamp(LOGICAL_DATE - pd.DateOffset(months=6), tz="UTC")
    assert times.min() >= low and times.max() < pd.Timestamp(LOGICAL_DATE + timedelta(days=1), tz="UTC")
    import duckdb

    with duckdb.connect(str(workdir.extract_db), read_only=True) as con:
        dates = con.execute("SELECT DISTINCT base_dt FROM credit_score_features_target").fetchall()
    assert dates == [(LOGICAL_DATE,)]


def test_an_extraction_with_no_records_fails_clearly(served) -> None:
    config, workdir, outputs = served
    ctx = StepContext(config, workdir, None, date(2023, 6, 1))  # before the data starts
    with pytest.raises(DataError, match="2023-06-01 returned no rows"):
        extract.run(ctx, outputs["features"]["labels"])


def test_multiclass_metrics_gates_and_registration(served) -> None:
    """Test metrics per class and the configured gates as version tags; the eval step's headline."""
    import mlflow

    config, workdir, outputs = served
    evaluated = outputs["eval"]
    assert {"roc_auc", "macro_f1", "log_loss", "baseline_macro_f1"} <= set(evaluated)
    from flywheel.registry.registry import mlflow_client

    client = mlflow_client(config, workdir)
    version = client.get_model_version(config.registry.model_name, outputs["model_upload"]["version"])
    assert version.tags["gate.passed"] == "true"
    assert float(version.tags["gate.macro_f1.value"]) == pytest.approx(float(evaluated["macro_f1"]), rel=1e-5)
    assert float(version.tags["gate.log_loss.threshold"]) == 0.9
    run = client.get_run(version.run_id)
    for name in ("Poor", "Standard", "Good"):
        assert 0 < run.data.metrics[f"test_f1_{name.lower()}"] <= 1
    summary = json.loads(Path(mlflow.artifacts.download_artifacts(evaluated["metrics"])).read_text())
    assert np.array(summary["confusion_matrix"]).shape == (3, 3)
    assert summary["classes"] == ["Poor", "Standard", "Good"]
    plots = {Path(a.path).name for a in client.list_artifacts(version.run_id, "plots")}
    assert {"confusion_matrix.png", "calibration_curve.png", "roc_curve.png"} <= plots


def test_the_service_answers_class_probabilities_and_counts_classes(served) -> None:
    """POST /v1/predict with a record: a probability per class summing to 1, the most probable class
    and the version; /metrics counts the served classes; the log keeps both, and drift from the log
    compares the predicted classes with the training distribution."""
    from flywheel.monitoring import monitor
    from flywheel.serving.local import call, local_service

    config, workdir, _ = served
    example = dict(config.spec.api.example)
    with local_service(config, workdir) as url:
        answers = [
            call(f"{url}/v1/predict", {**example, "id": f"x{i}", "delay_from_due_date": 3 * i})
            for i in range(20)
        ]
        with urllib.request.urlopen(f"{url}/metrics") as response:
            metrics = response.read().decode()
        schema = call(f"{url}/openapi.json")["components"]["schemas"]["Prediction"]
    for answer in answers:
        probabilities = answer["credit_score_probabilities"]
        assert set(probabilities) == {"Poor", "Standard", "Good"}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert answer["predicted_class"] == max(probabilities, key=probabilities.get)
        assert answer["model_version"] == "1"
    served_classes = pd.Series([a["predicted_class"] for a in answers]).value_counts()
    for name, count in served_classes.items():
        assert f'flywheel_predicted_class_total{{class="{name}"}} {float(count)}' in metrics
    assert schema["properties"]["predicted_class"]["enum"] == ["Poor", "Standard", "Good"]
    report, _, _ = monitor.drift(
        config, workdir, source="log", since=datetime(2000, 1, 1), until=datetime.now() + timedelta(days=1)
    )
    assert report.prediction is not None and report.prediction.column == "credit_score_probabilities"
    assert set(report.prediction.bins) >= set(served_classes.index)


def test_data_extract_runs_the_extraction_for_a_date_from_the_cli(served, tmp_path: Path) -> None:
    """`flywheel data extract --ds D` adds D to the window; a date that is not one is one clear line."""
    import shutil
    import subprocess
    import sys

    _, source, _ = served
    workdir = tmp_path / "wd"
    shutil.copytree(source.root, workdir)
    base = [sys.executable, "-m", "flywheel", "--workdir", str(workdir)]
    sets = [
        arg
        for key in ("data.generator.customers", "data.extract.lookback_months")
        for arg in ("--set", f"{key}={SMALL[key]}")
    ]
    config_file = Path(__file__).resolve().parents[2] / "configs" / "credit.yaml"
    done = subprocess.run(
        [*base, "--config", str(config_file), *sets, "data", "extract", "--ds", "2024-08-21"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "for 2024-08-21" in done.stdout and "2024-08-20" in done.stdout  # the pipeline's date stays
    bad = subprocess.run(
        [*base, "--config", str(config_file), "data", "extract", "--ds", "2024-02-30"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: ds: '2024-02-30' is not a date; expected YYYY-MM-DD, e.g. 2026-12-04"
    ]


def test_a_multiclass_challenger_is_compared_promoted_and_rolled_back(served, tmp_path: Path) -> None:
    """The registry's rules as for binary: the candidate's per-class test probabilities are compared
    with the champion's on log loss (paired bootstrap), a forced promotion moves the champion, and a
    rollback returns it."""
    import shutil

    from flywheel.registry import registry
    from flywheel.training import train

    config, source, outputs = served
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(source.root, workdir.root)
    result = train.train(config, workdir, workdir.datasets / Path(outputs["data_load"]["dataset"]).name)
    registration = registry.register(config, workdir, result.run_id, result.model_uri)
    assert registration.gate_passed
    decision = registry.decide(config, workdir, registration.version)
    assert decision.comparison is not None and decision.previous == "1"
    assert decision.reason.startswith("log_loss lower by")
    assert decision.comparison["ci_low"] <= decision.comparison["delta"] <= decision.comparison["ci_high"]
    forced = registry.promote(config, workdir, registration.version, force=True)
    assert forced.promoted and registry.champion_version(config, workdir) == registration.version
    assert registry.rollback(config, workdir) == (registration.version, "1")
    assert registry.champion_version(config, workdir) == "1"
