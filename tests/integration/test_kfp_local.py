"""The compiled KFP pipeline, all of it, under ``kfp.local``: every task a subprocess in a temporary
folder of its own, exchanging nothing but KFP outputs and the artifact store (a local path here, the
same code as ``s3://`` or ``gs://``). A failed validation skips the training path, as it does locally."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.pipeline.compile import kfp_pipeline
from flywheel.pipeline.dag import STEPS
from flywheel.registry import registry
from flywheel.workdir import Workdir
from tests.conftest import tree_digest

pytestmark = pytest.mark.slow


@pytest.fixture
def config(training_config: FlywheelConfig) -> FlywheelConfig:
    return apply_overrides(training_config, {"training.tuning.method": "none"})


def _run(config: FlywheelConfig, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Every task's outputs by step, after running the whole compiled pipeline."""
    from kfp import local

    tasks = tmp_path / "task-folders"
    tasks.mkdir()
    monkeypatch.setenv("TMPDIR", str(tasks))  # the task subprocesses' temporary folders
    root = tmp_path / "kfp-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    kfp_pipeline("unused-image", config, str(store))(logical_date="")
    assert not list(tasks.glob("flywheel-*")), "a task left its folder behind"  # tmp.*: kfp's own
    outputs = [json.loads(p.read_text()) for p in root.rglob("outputs") if p.is_file()]
    return {o["_step"]: o for o in outputs}


def test_the_whole_pipeline_runs_with_each_task_in_its_own_folder(
    featured_workdir: Workdir, config: FlywheelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    shutil.copytree(featured_workdir.root, store)
    steps = _run(config, store, tmp_path, monkeypatch)
    assert set(steps) == set(STEPS) and not any(o.get("skipped") for o in steps.values())
    assert steps["data_load"]["dataset"].startswith(f"{store}/datasets/")  # named in the store
    assert Path(steps["data_load"]["test"]).is_file()
    published = steps["publish"]
    assert published["promoted"] == "true" and published["champion"] == steps["model_upload"]["version"]
    # what the tasks did is in the store: the champion, its run's model, the online store
    assert registry.champion_version(config, Workdir.at(store)) == published["champion"]
    assert int(published["materialized"]) > 0
    # the store's MLflow database names the store's folder, not a task's (gone): a service reading
    # the store as its workdir loads the new champion's files from there
    with contextlib.closing(sqlite3.connect(store / "mlflow.db")) as con:
        locations = [row[0] for row in con.execute("SELECT storage_location FROM model_versions")]
    assert locations and all(location.startswith(store.as_uri()) for location in locations)
    assert not list(store.rglob("*-wal")) and not list(store.rglob("*-shm"))


def test_a_failed_validation_skips_the_training_path(
    featured_workdir: Workdir, config: FlywheelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    shutil.copytree(featured_workdir.root, store)
    next((store / "lake" / "raw").rglob("*.parquet")).unlink()  # the lake lost a committed file
    features = tree_digest(store / "features")
    steps = _run(config, store, tmp_path, monkeypatch)
    assert steps["validate"]["passed"] == "false"
    skipped = {name for name, outputs in steps.items() if outputs.get("skipped") == "true"}
    assert skipped == set(STEPS) - {"validate"}
    assert "validation failed" in steps["features"]["reason"]
    assert "upstream step features was skipped" in steps["data_load"]["reason"]
    assert tree_digest(store / "features") == features
    assert registry.champion_version(config, Workdir.at(store)) is None
    assert list((store / "reports").glob("*.json"))  # the failure's report was kept
