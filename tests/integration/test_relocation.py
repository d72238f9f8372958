"""Issue 11, item 9: a workdir is relocatable — nothing in it records an absolute path to itself, so a
copy writes its models and decisions into itself and reads its own features, never the original's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig, apply_overrides, default_config
from flywheel.features import online, repo, snapshots
from flywheel.registry import registry
from flywheel.registry.versions import load_version
from flywheel.retraining import retrain
from flywheel.training import train
from flywheel.workdir import Workdir
from tests.conftest import tree_digest

QUIET = {"retrain.on_drift": False, "retrain.schedule_days": None, "retrain.min_new_batches": None}


def test_a_copied_workdir_writes_and_reads_only_itself(
    served_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = apply_overrides(training_config, {**QUIET, "training.tuning.method": "none"})
    original = Workdir.at(tmp_path / "original")
    shutil.copytree(served_workdir.root, original.root)
    # a workdir in use: its MLflow store and its Feast registry name its own folders
    registry.mlflow_client(config, original)
    online.apply(config, original)
    copy = Workdir.at(tmp_path / "copy")
    shutil.copytree(original.root, copy.root)
    moved = original.root.rename(tmp_path / "moved-away")  # the copy cannot read the original now
    digest = tree_digest(moved)

    decision = retrain.retrain(config, copy)  # records a decision run with its report
    trained = train.train(config, copy)
    registration = registry.register(config, copy, trained.run_id, trained.model_uri)

    client = registry.mlflow_client(config, copy)
    here = copy.artifacts.as_uri() + "/"
    assert client.get_run(decision.record_run_id).info.artifact_uri.startswith(here)
    assert client.get_run(trained.run_id).info.artifact_uri.startswith(here)
    for version in ("1", registration.version):  # the champion from before the copy, and the new one
        assert client.get_model_version_download_uri(config.registry.model_name, version).startswith(here)
    ours = [e for e in client.search_experiments() if e.name != "Default"]  # MLflow's, never used
    assert ours and all(e.artifact_location == copy.artifacts.as_uri() for e in ours)
    assert not original.root.exists() and tree_digest(moved) == digest

    champion = load_version(config, copy, "1")  # the champion downloads from the copy's artifacts
    dates = snapshots.read_manifest(copy)["dates"]
    frame = pq.read_table(snapshots.table_dir(copy) / dates[max(dates)]["file"]).to_pandas().head(5)
    rows = frame[champion.features].astype(object).where(frame[champion.features].notna(), None)
    probabilities = champion.predict(rows.to_dict("records"))
    assert len(probabilities) == 5 and all(0 <= p <= 1 for p in probabilities)

    ids = [int(i) for i in frame["customer_id"]]
    assert all(row["found"] for row in online.get(config, copy, ids))
    # the plain Feast offline read in the repo folder, as the `feast` CLI does, finds the copy's files
    monkeypatch.chdir(repo.repo_dir(copy))
    store = repo.feature_store(copy)
    source = store.get_feature_view("features_customer").batch_source.path
    assert not Path(source).is_absolute()
    entities = frame[["customer_id", snapshots.TIMESTAMP_COLUMN]].rename(
        columns={snapshots.TIMESTAMP_COLUMN: "event_timestamp"}
    )
    historical = store.get_historical_features(
        entity_df=entities, features=[f"{'features_customer'}:orders_90d"]
    ).to_df()
    expected = dict(zip(frame["customer_id"], frame["orders_90d"], strict=True))
    assert dict(zip(historical["customer_id"], historical["orders_90d"], strict=True)) == expected
    assert tree_digest(moved) == digest


def test_re_rooting_rewrites_locations_only(tmp_path: Path) -> None:
    """Regression (review): re-rooting replaced the old root anywhere in any text column, so a param
    such as `s3://bucket<old root>/train.csv` or a note naming the old folder was rewritten too."""
    import mlflow

    from flywheel.training import tracking

    old = Workdir.at(tmp_path / "data")
    config = default_config()
    tracking.setup(config, old)
    with mlflow.start_run() as run:
        mlflow.log_param("source", f"s3://bucket{old.root}/train.csv")
        mlflow.set_tag("note", f"see {old.root}/README")
    new = Workdir.at(tmp_path / "elsewhere" / "copy")
    shutil.copytree(old.root, new.root)
    tracking.reroot(new)
    client = mlflow.MlflowClient(f"sqlite:///{new.mlflow_db}")
    moved = client.get_run(run.info.run_id)
    assert moved.info.artifact_uri.startswith(new.artifacts.as_uri() + "/")
    assert client.get_experiment(moved.info.experiment_id).artifact_location == new.artifacts.as_uri()
    assert moved.data.params["source"] == f"s3://bucket{old.root}/train.csv"
    assert moved.data.tags["note"] == f"see {old.root}/README"
