"""The feature store end to end on a generated lake: incremental builds, failure safety, Feast apply,
guarded materialization, online reads equal to offline values, and the plain feast CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig
from flywheel.data import ops as data_ops
from flywheel.errors import ConfigError
from flywheel.features import dataset, online, ops, snapshots
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir
from tests.conftest import tree_digest


@pytest.fixture
def featured_copy(featured_workdir: Workdir, tmp_path: Path) -> Workdir:
    shutil.copytree(featured_workdir.root, tmp_path / "wd")
    return Workdir.at(tmp_path / "wd")


@pytest.fixture(scope="module")
def online_workdir(featured_workdir: Workdir, small_config: FlywheelConfig, tmp_path_factory) -> Workdir:
    target = tmp_path_factory.mktemp("online") / "wd"
    shutil.copytree(featured_workdir.root, target)
    workdir = Workdir.at(target)
    online.apply(small_config, workdir)
    online.materialize(small_config, workdir)
    return workdir


def _values(path: str) -> list[dict]:
    return pq.read_table(path).drop_columns(["created_timestamp"]).to_pylist()


def test_a_new_batch_builds_only_new_dates_and_equals_a_full_build(
    featured_copy: Workdir, small_config: FlywheelConfig
) -> None:
    before = {Path(p).name: Path(p).read_bytes() for p in snapshots.snapshot_files(featured_copy)}
    data_ops.simulate(small_config, featured_copy, days=30)
    built, _ = ops.build(small_config, featured_copy)
    assert not built.full
    assert built.dates_built == ["2024-07-01", "2024-07-08", "2024-07-15", "2024-07-22", "2024-07-29"]
    after = {Path(p).name: p for p in snapshots.snapshot_files(featured_copy)}
    for name, content in before.items():
        if name != "2024-07-01.parquet":  # the batch starts at that instant, so that date is rebuilt
            assert Path(after[name]).read_bytes() == content, name
    incremental = {name: _values(path) for name, path in after.items()}
    full, _ = ops.build(small_config, featured_copy, full=True)
    assert full.full and len(full.dates_built) == len(after)
    assert {Path(p).name: _values(p) for p in snapshots.snapshot_files(featured_copy)} == incremental


def test_a_failed_build_leaves_the_snapshots_untouched(
    featured_copy: Workdir, small_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_digest(featured_copy.features)
    real = snapshots.pq.write_table
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshots.pq, "write_table", failing)
    with pytest.raises(OSError, match="disk full"):
        snapshots.build(small_config, featured_copy, full=True)
    assert tree_digest(featured_copy.features) == before


def test_an_unknown_feature_in_the_config_is_named(
    featured_copy: Workdir, small_config: FlywheelConfig
) -> None:
    config = small_config.model_copy(deep=True)
    config.features.names = ["orders_30d", "orders_31d"]
    with pytest.raises(ConfigError, match=r"features.names: unknown feature\(s\) \['orders_31d'\]"):
        dataset.build(config, featured_copy)


def test_online_values_equal_the_latest_offline_snapshot(online_workdir: Workdir, small_config) -> None:
    report = online.check_skew(small_config, online_workdir, sample=300)
    assert report.checked == 300 and report.ok, report.mismatches[:5]


def test_get_returns_features_and_marks_unknown_customers(online_workdir: Workdir, small_config) -> None:
    known = pq.read_table(snapshots.snapshot_files(online_workdir)[-1]).column("customer_id")[0].as_py()
    found, missing = online.get(small_config, online_workdir, [known, 10**9])
    assert found["found"] and not found["stale"] and found["features"]["orders_365d"] >= 1
    assert not missing["found"] and all(v is None for v in missing["features"].values())


def test_materialize_never_replaces_a_newer_value_with_an_older_one(
    online_workdir: Workdir, small_config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(online_workdir.root, workdir.root)
    manifest = snapshots.read_manifest(workdir)
    newest = max(manifest["dates"])
    customers = (
        pq.read_table(snapshots.table_dir(workdir) / manifest["dates"][newest]["file"])
        .column("customer_id")
        .to_pylist()[:50]
    )
    before = online.get(small_config, workdir, customers)
    # the offline store loses its newest date: every customer's latest snapshot is now older
    del manifest["dates"][newest]
    snapshots.manifest_path(workdir).write_text(json.dumps(manifest))
    result = online.materialize(small_config, workdir)
    assert result.skipped_older >= len(customers)
    assert online.get(small_config, workdir, customers) == before


def test_the_service_reads_the_online_store_while_a_materialization_writes(
    online_workdir: Workdir, small_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Regression: the SQLite online store used a rollback journal, so a write transaction (the loop
    materializing) made the service's reads wait up to 5 s and then fail with "database is locked".
    In WAL mode readers see the last committed values while the writer works."""
    import sqlite3

    from flywheel.features import repo
    from flywheel.serving.online_features import OnlineFeatures

    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(online_workdir.root, workdir.root)
    path = repo.repo_dir(workdir) / repo.SQLITE_ONLINE_STORE
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reader = OnlineFeatures(small_config, workdir)
    customer = online.latest_snapshots(CHURN, workdir).column("customer_id")[0].as_py()
    before = reader.read([customer])
    writer = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")  # a materialization in the middle of its write
        started = time.monotonic()
        assert reader.read([customer]) == before
        assert time.monotonic() - started < 2  # not a 5-second lock wait
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_incremental_materialize_writes_only_newer_snapshots(online_workdir: Workdir, small_config) -> None:
    result = online.materialize(small_config, online_workdir, incremental=True)
    assert result.candidates == 0 and result.written == 0


def test_the_feast_cli_sees_the_repo(online_workdir: Workdir) -> None:
    feast = Path(sys.executable).parent / "feast"
    listed = subprocess.run(
        [str(feast), "feature-views", "list"],
        cwd=online_workdir.feature_repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert "features_customer" in listed.stdout and "customer" in listed.stdout
    services = subprocess.run(
        [str(feast), "feature-services", "list"],
        cwd=online_workdir.feature_repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "churn_model" in services.stdout


def test_online_reads_before_apply_are_a_clear_error(
    featured_copy: Workdir, small_config: FlywheelConfig
) -> None:
    from flywheel.errors import DataError

    for action in (
        lambda: online.get(small_config, featured_copy, [1]),
        lambda: online.materialize(small_config, featured_copy),
        lambda: online.check_skew(small_config, featured_copy),
    ):
        with pytest.raises(DataError, match="run `flywheel features apply` first"):
            action()
