"""Tasks that share no disk (:mod:`flywheel.pipeline.staging`): a step runs in a folder of its own,
staged in from the artifact store; only a step that succeeded writes back, manifests last; paths in
outputs name the store and map back to each task's own copy. The stores are real fsspec filesystems:
a local path and ``memory://``."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from pathlib import Path

import fsspec
import pytest

from flywheel.config import FlywheelConfig, default_config
from flywheel.errors import ConfigError, DataError
from flywheel.features import online
from flywheel.lock import WorkdirBusy, workdir_lock
from flywheel.pipeline.context import StepSkipped
from flywheel.pipeline.dag import STEPS
from flywheel.pipeline.staging import ArtifactStore, run_staged, snapshot
from flywheel.workdir import Workdir
from tests.conftest import tree_digest


@pytest.fixture
def config() -> FlywheelConfig:
    return default_config()


def _seed(store: Path) -> None:
    for relative, text in {
        "lake/manifest.json": "{}",
        "lake/raw/users/batch-1.parquet": "users",
        "features/labels.parquet": "labels",
        ".lock": "held by someone",
        "predictions/predictions.db": "the service's log",
        ".model_cache/v1/model.bin": "a download",
        "datasets/.staging-abc/train.parquet": "a killed writer's scratch",
    }.items():
        (store / relative).parent.mkdir(parents=True, exist_ok=True)
        (store / relative).write_text(text)


def test_pull_stages_the_workdir_but_not_locks_scratch_or_the_service_log(tmp_path: Path) -> None:
    _seed(tmp_path / "store")
    task = Workdir.at(tmp_path / "task")
    staged = ArtifactStore(str(tmp_path / "store")).pull(task)
    assert set(staged) == {"lake/manifest.json", "lake/raw/users/batch-1.parquet", "features/labels.parquet"}
    assert (task.root / "lake/raw/users/batch-1.parquet").read_text() == "users"


def test_push_writes_what_changed_manifests_last_and_deletes_what_was_removed(tmp_path: Path) -> None:
    url = f"memory://flywheel-{uuid.uuid4().hex}/store"
    memory = fsspec.filesystem("memory")
    for relative, text in {
        "lake/manifest.json": "{}",
        "features/old.parquet": "old",
        "keep.txt": "k",
    }.items():
        memory.pipe(f"{url}/{relative}", text.encode())
    store = ArtifactStore(url)
    task = Workdir.at(tmp_path / "task")
    before = store.pull(task)
    (task.root / "features/old.parquet").unlink()
    (task.root / "lake/manifest.json").write_text('{"batches": 2}')
    (task.root / "lake/raw").mkdir()
    (task.root / "lake/raw/b2.parquet").write_text("new rows")
    (task.root / ".lock").write_text("mine")
    watermark = online.watermark_path(task)  # sorts before the online store's database
    watermark.parent.mkdir(parents=True)
    watermark.write_text('{"through": "2024-06-30"}')
    (watermark.parent / "zz-rows.txt").write_text("the rows it marks")
    written: list[str] = []
    put = store.fs.put_file
    store.fs.put_file = lambda local, remote, **kw: (written.append(remote), put(local, remote, **kw))
    assert store.push(task, before) == (4, 1)
    # the manifest and the watermark after what they describe (regression: a service saw a new
    # materialization before its rows and cached old scores under it)
    assert [Path(p).name for p in written] == [
        "zz-rows.txt",
        "b2.parquet",
        "materialized.json",
        "manifest.json",
    ]
    assert memory.cat(f"{url}/lake/manifest.json") == b'{"batches": 2}'
    assert not memory.exists(f"{url}/features/old.parquet") and not memory.exists(f"{url}/.lock")
    assert memory.cat(f"{url}/keep.txt") == b"k"


def test_outputs_name_the_store_and_map_back_to_the_tasks_own_copy(tmp_path: Path) -> None:
    store = ArtifactStore("memory://bucket/flywheel/")
    first, second = Workdir.at(tmp_path / "first"), Workdir.at(tmp_path / "second")
    outputs = {
        "dataset": f"{first.root}/datasets/abc",
        "uri": f"file://{first.root}/mlartifacts/x",
        "run_id": "runs:/123/model",
        "elsewhere": f"{first.root}-other/x",
    }
    shared = store.to_store(outputs, first)
    assert shared["dataset"] == f"{store.url}/datasets/abc" and shared["uri"] == f"{store.url}/mlartifacts/x"
    assert shared["run_id"] == "runs:/123/model" and shared["elsewhere"] == outputs["elsewhere"]
    assert store.to_local(shared, second)["dataset"] == f"{second.root}/datasets/abc"


def test_a_store_that_cannot_be_opened_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="nosuch://bucket"):
        ArtifactStore("nosuch://bucket/x")
    with pytest.raises(ConfigError, match="artifact_store is empty"):
        ArtifactStore(" ")


def test_a_step_that_succeeded_writes_back_and_names_the_store(
    tmp_path: Path, config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(tmp_path / "store")
    folders: list[Path] = []

    def data_load(ctx, labels: str) -> dict[str, str]:
        folders.append(ctx.workdir.root)
        assert Path(labels).read_text() == "labels"  # the store's URL came back as this task's copy
        (ctx.workdir.datasets / "d1").mkdir(parents=True)
        (ctx.workdir.datasets / "d1/test.parquet").write_text("split")
        return {
            "dataset": str(ctx.workdir.datasets / "d1"),
            "test": str(ctx.workdir.datasets / "d1/test.parquet"),
        }

    monkeypatch.setattr(STEPS["data_load"].module, "run", data_load)
    store = ArtifactStore(str(tmp_path / "store"))
    upstream = [{"_step": "features", "labels": f"{store.url}/features/labels.parquet"}]
    outputs = run_staged(config, store, "data_load", {}, upstream)
    assert outputs["test"] == f"{store.url}/datasets/d1/test.parquet"
    assert (tmp_path / "store/datasets/d1/test.parquet").read_text() == "split"
    assert folders and folders[0] != tmp_path / "store" and not folders[0].exists()  # its own, removed


def test_a_failed_or_skipped_step_leaves_the_store_as_it_was(
    tmp_path: Path, config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(tmp_path / "store")
    digest = {folder: tree_digest(tmp_path / "store" / folder) for folder in ("lake", "features")}

    def broken(ctx, labels: str) -> dict[str, str]:
        (ctx.workdir.datasets / "half-written").mkdir(parents=True)
        raise DataError("the disk is full")

    monkeypatch.setattr(STEPS["data_load"].module, "run", broken)
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(DataError):
        run_staged(config, store, "data_load", {"labels": f"{store.url}/features/labels.parquet"}, [])
    skipped = {"_step": "features", "skipped": "true", "reason": "validation failed"}
    with pytest.raises(StepSkipped, match="upstream step features was skipped: validation failed"):
        run_staged(config, store, "data_load", {}, [skipped])
    assert {folder: tree_digest(tmp_path / "store" / folder) for folder in digest} == digest
    assert (
        not (tmp_path / "store/datasets/half-written").exists()
        and not (tmp_path / "store/mlflow.db").exists()
    )


def test_a_database_travels_with_its_write_ahead_log_and_reaches_a_live_reader(tmp_path: Path) -> None:
    """A write that sits in the -wal (the database file untouched) is still a change; the side files
    are never staged; the store's database is written through SQLite, so a reader holding it open
    sees the new rows (a file copied over it could be half-written or clash with its -shm)."""
    store_db = tmp_path / "store" / "feature_repo" / "online.db"
    store_db.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(store_db)) as con, con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (v INTEGER)")
    store = ArtifactStore(str(tmp_path / "store"))
    task = Workdir.at(tmp_path / "task")
    before = store.pull(task)
    reader = sqlite3.connect(store_db)  # e.g. the service, open all along
    writer = sqlite3.connect(task.root / "feature_repo" / "online.db")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    with writer:
        writer.execute("INSERT INTO t VALUES (1), (2)")
    assert (task.root / "feature_repo" / "online.db-wal").stat().st_size > 0  # the rows sit in the log
    assert store.push(task, before) == (1, 0)
    writer.close()
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (2,)
    reader.close()
    assert set(snapshot(task)) == {"feature_repo/online.db"}


def test_a_store_without_a_workdir_or_with_a_writer_is_refused(
    tmp_path: Path, config: FlywheelConfig
) -> None:
    with pytest.raises(ConfigError, match="holds no workdir"):
        ArtifactStore(str(tmp_path / "nothing-here")).pull(Workdir.at(tmp_path / "task"))
    _seed(tmp_path / "store")
    (tmp_path / "store/.lock").unlink()
    held, done = threading.Event(), threading.Event()

    def loop() -> None:  # e.g. `flywheel loop` ingesting (another thread counts as another writer)
        with workdir_lock(Workdir.at(tmp_path / "store"), "loop"):
            held.set()
            done.wait(30)

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        assert held.wait(30)
        with pytest.raises(WorkdirBusy, match="loop"):
            run_staged(config, ArtifactStore(str(tmp_path / "store")), "validate", {}, [])
    finally:
        done.set()
        writer.join()
