"""Shared fixtures: small generated lakes, built once per session and copied for tests that write."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from prometheus_client import values

from flywheel.config import FlywheelConfig, apply_overrides, default_config
from flywheel.data import ops
from flywheel.workdir import Workdir

# importing Feast sets PROMETHEUS_MULTIPROC_DIR in this process, and whichever test imports it first
# would make every later metric a value in one file per name: the services several tests start in
# this one process would then share their counts (the counts a test reads depended on the tests
# before it). In memory, as in a one-worker service; the multiprocess tests set their own class.
values.ValueClass = values.MutexValue

SMALL = {
    "data.generator.customers": 1500,
    "data.generator.products": 300,
    "data.generator.start": date(2023, 1, 1),
    "data.generator.end": date(2024, 7, 1),
    "data.generator.seed": 7,
    # no test may depend on machine speed: the latency gate is tested with injected timings
    # (tests/unit/test_gates.py), and here it has a bound no scheduling noise reaches
    "registry.gates.max_p99_latency_ms": 60_000.0,
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's config or workdir by accident."""
    monkeypatch.delenv("FLYWHEEL_CONFIG", raising=False)
    monkeypatch.delenv("FLYWHEEL_WORKDIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _own_tracking_store(tmp_path: Path) -> Iterator[None]:
    """Every test starts on an empty tracking store of its own (as MLflow's own suite does): a test
    that needs a workdir's runs or models must point MLflow there itself, so no outcome depends on
    which test or fixture set the process-global tracking URI last."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'own-tracking.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _forget_tracking_env()  # MLflow exports them for subprocesses; the CLI processes choose their own
    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    _forget_tracking_env()


def _forget_tracking_env() -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def small_config() -> FlywheelConfig:
    return apply_overrides(default_config(), SMALL)


@pytest.fixture(scope="session")
def generated_workdir(tmp_path_factory: pytest.TempPathFactory, small_config: FlywheelConfig) -> Workdir:
    """A lake holding one generated history; read-only: copy it with ``lake_copy`` to write."""
    workdir = Workdir.at(tmp_path_factory.mktemp("generated") / "wd")
    ops.generate(small_config, workdir)
    return workdir


@pytest.fixture
def lake_copy(generated_workdir: Workdir, tmp_path: Path) -> Workdir:
    target = tmp_path / "wd"
    shutil.copytree(generated_workdir.root, target)
    return Workdir.at(target)


def tree_digest(folder: Path) -> str:
    """A hash of every file's relative path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def featured_workdir(
    tmp_path_factory: pytest.TempPathFactory, generated_workdir: Workdir, small_config: FlywheelConfig
) -> Workdir:
    """The generated lake with feature snapshots, labels and a training set built; read-only."""
    from flywheel.features import dataset
    from flywheel.features import ops as feature_ops

    target = tmp_path_factory.mktemp("featured") / "wd"
    shutil.copytree(generated_workdir.root, target)
    workdir = Workdir.at(target)
    feature_ops.build(small_config, workdir)
    dataset.build(small_config, workdir)
    return workdir


@pytest.fixture(scope="session")
def training_config(small_config: FlywheelConfig) -> FlywheelConfig:
    return apply_overrides(small_config, {"training.tuning.method": "optuna", "training.tuning.trials": 2})


@pytest.fixture(scope="session")
def trained(
    featured_workdir: Workdir, training_config: FlywheelConfig, tmp_path_factory: pytest.TempPathFactory
):
    """A copy of the featured workdir with one LightGBM candidate trained and logged (not registered)."""
    from flywheel.training import train

    target = tmp_path_factory.mktemp("trained") / "wd"
    shutil.copytree(featured_workdir.root, target)
    workdir = Workdir.at(target)
    return workdir, train.train(training_config, workdir)


@pytest.fixture(scope="session")
def served_workdir(
    trained, training_config: FlywheelConfig, tmp_path_factory: pytest.TempPathFactory
) -> Workdir:
    """The trained workdir with its candidate registered and promoted, and the online store filled."""
    from flywheel.features import online
    from flywheel.registry import registry

    source, result = trained
    target = tmp_path_factory.mktemp("served") / "wd"
    shutil.copytree(source.root, target)
    workdir = Workdir.at(target)
    online.apply(training_config, workdir)
    online.materialize(training_config, workdir)
    registry.register(training_config, workdir, result.run_id, result.model_uri)
    registry.promote(training_config, workdir)
    return workdir
