"""The registry against a fresh sqlite tracking store per test: gates, promotion, rollback, history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.registry import registry
from flywheel.registry.registry import CHALLENGER, CHAMPION, RegistryError
from flywheel.training import train
from flywheel.workdir import Workdir


@pytest.fixture
def workdir(trained, tmp_path: Path) -> Workdir:
    """The trained workdir (one logged candidate) copied, so each test owns its sqlite store."""
    source, _ = trained
    shutil.copytree(source.root, tmp_path / "wd")
    return Workdir.at(tmp_path / "wd")


def _aliases(config: FlywheelConfig, workdir: Workdir) -> dict[str, list[str]]:
    return {row["version"]: row["aliases"] for row in registry.list_versions(config, workdir)}


def test_a_failed_gate_moves_no_alias(workdir: Workdir, trained, training_config: FlywheelConfig) -> None:
    _, result = trained
    strict = apply_overrides(training_config, {"registry.gates.min_roc_auc": 0.999})
    registration = registry.register(strict, workdir, result.run_id, result.model_uri)
    assert not registration.gate_passed
    assert [c.name for c in registration.checks if not c.passed] == ["roc_auc"]
    assert _aliases(strict, workdir) == {registration.version: []}
    described = registry.describe(strict, workdir, registration.version)
    assert described["tags"]["gate.passed"] == "false"
    assert described["tags"]["gate.roc_auc.threshold"] == "0.999"
    decision = registry.promote(strict, workdir, registration.version)
    assert not decision.promoted and "did not pass" in decision.reason
    assert _aliases(strict, workdir) == {registration.version: []}


def test_promote_compare_and_rollback(workdir: Workdir, trained, training_config: FlywheelConfig) -> None:
    _, result = trained
    first = registry.register(training_config, workdir, result.run_id, result.model_uri)
    assert first.gate_passed and _aliases(training_config, workdir)[first.version] == [CHALLENGER]
    decision = registry.promote(training_config, workdir)
    assert decision.promoted and decision.reason == "no champion yet"

    # the same model registered again cannot beat itself: no promotion, champion unchanged
    second = registry.register(training_config, workdir, result.run_id, result.model_uri)
    decision = registry.promote(training_config, workdir, second.version)
    assert not decision.promoted and decision.comparison["delta"] == pytest.approx(0.0)
    assert CHAMPION in _aliases(training_config, workdir)[first.version]

    # a forced promotion, then a rollback to the previous champion
    assert registry.promote(training_config, workdir, second.version, force=True).promoted
    assert CHAMPION in _aliases(training_config, workdir)[second.version]
    assert registry.rollback(training_config, workdir, reason="bad canary") == (second.version, first.version)
    assert CHAMPION in _aliases(training_config, workdir)[first.version]

    moves = registry.describe(training_config, workdir, second.version)["alias_moves"]
    champion_moves = [(m["from"], m["to"], m["reason"]) for m in moves if m["alias"] == CHAMPION]
    assert champion_moves == [
        (first.version, second.version, "promoted by hand (--force)"),
        (second.version, first.version, "bad canary"),
    ]
    assert all(m["at"] for m in moves)


def test_rollback_without_a_previous_champion_is_a_clear_error(workdir: Workdir, training_config) -> None:
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(training_config, workdir)


def test_a_better_challenger_is_promoted(workdir: Workdir, training_config: FlywheelConfig) -> None:
    weak_config = apply_overrides(
        training_config,
        {
            "training.model_type": "logistic_regression",
            "training.tuning.method": "none",
            "training.params": {"C": 0.0005},
            "registry.gates.min_roc_auc": 0.5,
            "registry.gates.min_pr_auc": 0.5,
        },
    )
    weak = train.train(weak_config, workdir)
    weak_version = registry.register(weak_config, workdir, weak.run_id, weak.model_uri).version
    assert registry.promote(weak_config, workdir, weak_version).promoted
    strong = train.train(training_config, workdir)
    assert strong.test_metrics["roc_auc"] > weak.test_metrics["roc_auc"] + 0.01
    strong_version = registry.register(training_config, workdir, strong.run_id, strong.model_uri).version
    decision = registry.promote(training_config, workdir, strong_version)
    assert decision.promoted and decision.comparison["ci_low"] > 0
    assert CHAMPION in _aliases(training_config, workdir)[strong_version]


def test_runs_and_artifacts_stay_in_the_workdir(
    trained, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Regression: runs once went to MLflow's Default experiment with artifacts in ./mlruns."""
    import mlflow

    workdir, result = trained
    run = mlflow.MlflowClient(f"sqlite:///{workdir.mlflow_db}").get_run(result.run_id)
    experiment = mlflow.MlflowClient(f"sqlite:///{workdir.mlflow_db}").get_experiment(run.info.experiment_id)
    assert experiment.name == training_config.tracking.experiment
    assert experiment.artifact_location.startswith(workdir.artifacts.as_uri())
    assert run.info.artifact_uri.startswith(workdir.artifacts.as_uri())
    assert train.best_runs(training_config, workdir)[0]["run_id"] == result.run_id


def test_the_latency_gate_times_the_serving_path(
    workdir: Workdir, trained, training_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the gate timed the MLflow pyfunc (~50 ms at p99 on a busy machine) while the
    service scores through ``predict_records`` (~0.02 ms): its figure did not mean what the service
    will do. A serving path slowed by ≥ 3 ms per call must show in the gate."""
    import time

    from flywheel.training.models import LightGBMModel

    _, result = trained
    fast_path = LightGBMModel.predict_records
    calls: list[int] = []

    def slowed(self, records):
        calls.append(len(records))
        time.sleep(0.003)
        return fast_path(self, records)

    monkeypatch.setattr(LightGBMModel, "predict_records", slowed)
    strict = apply_overrides(training_config, {"registry.gates.max_p99_latency_ms": 2.0})
    registration = registry.register(strict, workdir, result.run_id, result.model_uri)
    latency = next(c for c in registration.checks if c.name == "p99_latency_ms")
    assert calls == [1] * 201  # a warm-up and 200 single rows, all through the serving path
    assert latency.value >= 3.0 and not latency.passed and not registration.gate_passed


KILLED_REGISTRATION = """
import os, signal, sys
import mlflow
from flywheel.config import load_config
from flywheel.registry import registry
from flywheel.workdir import Workdir

real = mlflow.register_model

def killed(*args, **kwargs):  # SIGKILL right after the version exists
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

mlflow.register_model = killed
config = load_config(sys.argv[2])
registry.register(config, Workdir.at(sys.argv[1]), sys.argv[3], sys.argv[4])
"""


def test_a_kill_during_registration_never_leaves_a_version_without_its_gate(
    workdir: Workdir, trained, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Regression: gate tags were written after the version was created, so a kill in between left a
    version that `model list` showed blank."""
    import signal
    import subprocess
    import sys

    from tests.servers import write_config

    _, result = trained
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_REGISTRATION,
            str(workdir.root),
            str(write_config(training_config, tmp_path)),
            result.run_id,
            result.model_uri,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    [row] = registry.list_versions(training_config, workdir)
    assert row["gate_passed"] == "true" and row["roc_auc"] is not None
    assert registry.describe(training_config, workdir, row["version"])["tags"]["gate.p99_latency_ms.passed"]


def test_register_and_compare_use_the_versions_own_dataset(
    workdir: Workdir, trained, training_config: FlywheelConfig
) -> None:
    """Regression: the gate's latency sample and the comparison read the global LATEST dataset
    pointer; now they read the split the version was trained and evaluated on."""
    _, result = trained
    (workdir.datasets / "LATEST").unlink()  # no global pointer to fall back on
    first = registry.register(training_config, workdir, result.run_id, result.model_uri)
    assert registry.promote(training_config, workdir, first.version).promoted
    second = registry.register(training_config, workdir, result.run_id, result.model_uri)
    decision = registry.promote(training_config, workdir, second.version)
    assert decision.comparison is not None and decision.comparison["delta"] == pytest.approx(0.0)
