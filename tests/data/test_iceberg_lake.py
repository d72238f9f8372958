"""The lake as Iceberg tables: the same rows and the same training set as the Parquet lake, one
snapshot per table per batch named in the manifest, and the lake's guarantees kept — a rejected batch
moves no table's snapshot, a killed commit is seen by no reader and undone by the next commit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.data.iceberg import IcebergTables
from flywheel.data.lake import Lake
from flywheel.data.validation import BatchRejected
from flywheel.errors import DataError
from flywheel.features import dataset as dataset_module
from flywheel.features import ops as feature_ops
from flywheel.usecases.churn import USE_CASE as CHURN
from flywheel.workdir import Workdir

SIZE = {"data.generator.customers": 300, "data.generator.products": 80}


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory, small_config: FlywheelConfig) -> dict[str, Workdir]:
    """The same generated history and one simulated batch, in a Parquet and in an Iceberg lake."""
    out = {}
    for fmt in ("parquet", "iceberg"):
        config = apply_overrides(small_config, {**SIZE, "lake.format": fmt})
        workdir = Workdir.at(tmp_path_factory.mktemp(fmt) / "wd")
        ops.generate(config, workdir)
        ops.simulate(config, workdir, days=20, batch_id="next")
        out[fmt] = workdir
    return out


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


def kill_on_append(monkeypatch: pytest.MonkeyPatch, nth: int) -> list[str]:
    """Make the ``nth`` Iceberg append of the coming commit die as a killed process would; returns
    the tables appended to (in order). ``monkeypatch.undo()`` lets commits through again."""
    real_append, calls = IcebergTables.append, []

    def append(self, name, rows, batch_id):
        calls.append(name)
        if len(calls) == nth:
            raise KeyboardInterrupt("killed mid-commit")
        return real_append(self, name, rows, batch_id)

    monkeypatch.setattr(IcebergTables, "append", append)
    return calls


def test_every_table_holds_the_same_rows_and_gives_the_same_training_set(
    lakes: dict[str, Workdir], small_config: FlywheelConfig
) -> None:
    parquet, iceberg = Lake(lakes["parquet"], CHURN), Lake(lakes["iceberg"], CHURN)
    assert (parquet.format, iceberg.format) == ("parquet", "iceberg")
    assert not list(lakes["iceberg"].raw.glob("*/batch=*"))  # no Parquet layout beside the tables
    for name in CHURN.table_order:
        assert _sorted(iceberg.read(name)).equals(_sorted(parquet.read(name))), name
    config = apply_overrides(small_config, SIZE)
    built = {}
    for fmt, workdir in lakes.items():
        feature_ops.build(config, workdir)
        built[fmt] = dataset_module.build(config, workdir)
    assert built["iceberg"].dataset_id == built["parquet"].dataset_id
    for split in dataset_module.SPLITS:
        a, b = (built[fmt].path / f"{split}.parquet" for fmt in ("parquet", "iceberg"))
        assert a.read_bytes() == b.read_bytes(), split


def test_each_batch_is_one_snapshot_per_table_and_the_manifest_names_it(lakes: dict[str, Workdir]) -> None:
    lake = Lake(lakes["iceberg"], CHURN)
    first, second = lake.batches()
    tables = lake.iceberg()
    for name in first["tables"]:
        snapshots = tables.snapshots(name)
        batches = [s["batch_id"] for s in snapshots]
        expected = [b["batch_id"] for b in (first, second) if name in b["tables"]]
        assert batches == expected, name
        assert [s["snapshot_id"] for s in snapshots] == [
            b["tables"][name]["snapshot_id"] for b in (first, second) if name in b["tables"]
        ]
        assert snapshots[-1]["current"] and snapshots[-1]["rows"] == sum(
            b["tables"][name]["rows"] for b in (first, second) if name in b["tables"]
        )
    listed = ops.snapshots(CHURN, lakes["iceberg"])  # what `flywheel data status` shows
    assert {(s["table"], s["batch_id"]) for s in listed} == {
        (name, b["batch_id"]) for b in (first, second) for name in b["tables"]
    }
    assert ops.snapshots(CHURN, lakes["parquet"]) == []
    # time travel: the lake as of the first batch reads the first batch's rows only
    earlier = lake.snapshot_ids([first])
    assert (
        sum(pa.parquet.read_metadata(f).num_rows for f in tables.files("orders", earlier["orders"]))
        == (first["tables"]["orders"]["rows"])
    )


@pytest.fixture
def iceberg_lake(tmp_path: Path, small_config: FlywheelConfig) -> tuple[FlywheelConfig, Workdir]:
    config = apply_overrides(small_config, {**SIZE, "lake.format": "iceberg"})
    workdir = Workdir.at(tmp_path / "wd")
    ops.generate(config, workdir)
    return config, workdir


def _state(workdir: Workdir) -> tuple[dict, dict[str, int]]:
    lake = Lake(workdir, CHURN)
    tables = lake.iceberg()
    current = {name: tables.table(name).current_snapshot().snapshot_id for name in lake.snapshot_ids()}
    return lake.manifest(), current


def test_a_rejected_batch_moves_no_tables_snapshot(iceberg_lake) -> None:
    _, workdir = iceberg_lake
    lake = Lake(workdir, CHURN)
    before = _state(workdir)
    batch = CHURN.generator.simulate(lake, lake.latest_synthetic(), 10, "none", "spoiled")
    orders = batch.tables["orders"]
    spoiled = orders.set_column(
        orders.schema.get_field_index("user_id"), "user_id", pa.array([-1] * orders.num_rows, pa.int64())
    )
    batch.tables["orders"] = spoiled
    with pytest.raises(BatchRejected):
        ops.commit(CHURN, workdir, batch)
    assert _state(workdir) == before


def test_a_killed_commit_is_seen_by_no_reader_and_undone_by_the_next(
    iceberg_lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, workdir = iceberg_lake
    lake = Lake(workdir, CHURN)
    rows_before = {name: lake.read(name).num_rows for name in CHURN.table_order}
    manifest_before, current_before = _state(workdir)
    calls = kill_on_append(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        ops.simulate(config, workdir, days=10, batch_id="killed")
    first = calls[0]
    assert Lake(workdir, CHURN).manifest() == manifest_before
    assert {name: Lake(workdir, CHURN).read(name).num_rows for name in CHURN.table_order} == rows_before
    moved = Lake(workdir, CHURN).iceberg().table(first).current_snapshot().snapshot_id
    assert moved != current_before[first]  # Iceberg took the first table's append…
    monkeypatch.undo()
    ops.simulate(config, workdir, days=10, batch_id="killed")  # …the next commit undoes it first
    manifest, current = _state(workdir)
    assert [b["batch_id"] for b in manifest["batches"]][-1] == "killed"
    assert current == Lake(workdir, CHURN).snapshot_ids()
    snapshots = Lake(workdir, CHURN).iceberg().snapshots(first)
    assert [s["batch_id"] for s in snapshots if s["current"]] == ["killed"]
    assert (
        Lake(workdir, CHURN).read(first).num_rows
        == rows_before[first] + manifest["batches"][-1]["tables"][first]["rows"]
    )


def test_a_parquet_lake_keeps_its_format_whatever_the_configuration(
    lakes: dict[str, Workdir], small_config: FlywheelConfig
) -> None:
    lake = Lake(lakes["parquet"], CHURN, new_format="iceberg")
    assert lake.format == "parquet" and all(Path(f).exists() for f in lake.files("orders"))


@pytest.mark.parametrize("fmt", ["parquet", "iceberg"])
def test_as_of_rebuilds_an_earlier_training_set_exactly(
    tmp_path: Path, small_config: FlywheelConfig, fmt: str
) -> None:
    """The training set built after the first batch, rebuilt after a second batch has changed the lake
    (by batch id, and for Iceberg by a snapshot id), has the same id and the same bytes."""
    from flywheel.features import asof

    config = apply_overrides(small_config, {**SIZE, "lake.format": fmt})
    workdir = Workdir.at(tmp_path / "wd")
    ops.generate(config, workdir)
    feature_ops.build(config, workdir)
    then = dataset_module.build(config, workdir)
    first = Lake(workdir, CHURN).batches()[0]
    if fmt == "iceberg":
        assert then.metadata["lake_snapshots"] == {n: t["snapshot_id"] for n, t in first["tables"].items()}
    splits = {name: (then.path / f"{name}.parquet").read_bytes() for name in dataset_module.SPLITS}
    shutil.rmtree(then.path)

    ops.simulate(config, workdir, days=30, batch_id="later")
    feature_ops.build(config, workdir)
    assert dataset_module.build(config, workdir).dataset_id != then.dataset_id  # the lake moved on

    references = [first["batch_id"]]
    if fmt == "iceberg":
        references.append(str(first["tables"]["orders"]["snapshot_id"]))
    for reference in references:
        again = asof.rebuild(config, workdir, reference)
        assert again.dataset_id == then.dataset_id and again.path == workdir.datasets / then.dataset_id
        assert {name: (again.path / f"{name}.parquet").read_bytes() for name in splits} == splits
        shutil.rmtree(again.path)
    assert not list(workdir.staging.glob("as-of-*"))  # the scratch workdir is gone
    with pytest.raises(DataError, match="--as-of nope: no committed batch"):
        asof.rebuild(config, workdir, "nope")


def test_expiring_snapshots_keeps_every_row_and_ends_time_travel_before_them(
    iceberg_lake, small_config: FlywheelConfig
) -> None:
    from flywheel.features import asof

    config, workdir = iceberg_lake
    ops.simulate(config, workdir, days=10, batch_id="second")
    lake = Lake(workdir, CHURN)
    rows = {name: lake.read(name).num_rows for name in CHURN.table_order}
    first = lake.batches()[0]["batch_id"]
    expired = lake.expire_snapshots(keep_batches=1)
    assert expired["orders"] == [lake.batches()[0]["tables"]["orders"]["snapshot_id"]]
    assert {name: Lake(workdir, CHURN).read(name).num_rows for name in CHURN.table_order} == rows
    assert [s["batch_id"] for s in lake.iceberg().snapshots("orders")] == ["second"]
    with pytest.raises(DataError, match="were expired"):
        asof.rebuild(config, workdir, first)
    with pytest.raises(DataError, match="parquet lake"):
        Lake(Workdir.at(workdir.root.parent / "none"), CHURN).expire_snapshots(1)


def test_a_parquet_lake_migrates_in_place_and_reads_and_builds_the_same(
    tmp_path: Path, small_config: FlywheelConfig
) -> None:
    """`flywheel data migrate --to iceberg`: no row rewritten, the same rows, a snapshot per table per
    batch, the same training set before and after, and later batches committed as Iceberg snapshots."""
    config = apply_overrides(small_config, SIZE)
    workdir = Workdir.at(tmp_path / "wd")
    ops.generate(config, workdir)
    ops.simulate(config, workdir, days=20, batch_id="next")
    feature_ops.build(config, workdir)
    before = dataset_module.build(config, workdir)
    splits = {name: (before.path / f"{name}.parquet").read_bytes() for name in dataset_module.SPLITS}
    parquet_files = sorted(str(p) for p in workdir.raw.rglob("*.parquet"))
    rows = {name: _sorted(Lake(workdir, CHURN).read(name)) for name in CHURN.table_order}
    count = Lake(workdir, CHURN).migrate_to_iceberg()
    lake = Lake(workdir, CHURN)
    assert lake.format == "iceberg" and count == sum(len(b["tables"]) for b in lake.batches())
    assert sorted(lake.files("orders")) == [f for f in parquet_files if "/orders/" in f]  # in place
    assert all(_sorted(lake.read(name)).equals(rows[name]) for name in CHURN.table_order)
    shutil.rmtree(before.path)
    again = dataset_module.build(config, workdir)
    assert again.dataset_id == before.dataset_id
    assert {name: (again.path / f"{name}.parquet").read_bytes() for name in splits} == splits
    ops.simulate(apply_overrides(config, {"lake.format": "parquet"}), workdir, days=10, batch_id="after")
    assert Lake(workdir, CHURN).batches()[-1]["tables"]["orders"]["snapshot_id"] is not None
    with pytest.raises(DataError, match="not a Parquet lake"):
        Lake(workdir, CHURN).migrate_to_iceberg()


def test_the_pipelines_integrity_check_reads_an_iceberg_lake(iceberg_lake) -> None:
    """`validate` (the pipeline's first step) passes on an intact Iceberg lake and names a lost file."""
    _, workdir = iceberg_lake
    report = ops.verify(CHURN, workdir)
    assert report.ok and report.rows["orders"] == Lake(workdir, CHURN).read("orders").num_rows
    Path(Lake(workdir, CHURN).files("orders")[0]).unlink()
    report = ops.verify(CHURN, workdir)
    assert not report.ok and "unreadable" in report.failures[0].message


def test_a_killed_first_commit_is_undone_by_the_next(
    tmp_path: Path, small_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest names no snapshot yet, so the tables the killed commit created go entirely."""
    config = apply_overrides(small_config, {**SIZE, "lake.format": "iceberg"})
    workdir = Workdir.at(tmp_path / "wd")
    calls = kill_on_append(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        ops.generate(config, workdir)
    assert Lake(workdir, CHURN).is_empty()
    monkeypatch.undo()
    ops.generate(config, workdir)
    lake = Lake(workdir, CHURN)
    for name in calls[:2]:  # appended by the killed commit, then again by this one: once only
        assert [s["batch_id"] for s in lake.iceberg().snapshots(name)] == [lake.batch_ids()[0]], name
    rows = {name: lake.read(name).num_rows for name in CHURN.table_order}
    clean = Workdir.at(tmp_path / "clean")
    ops.generate(config, clean)
    assert rows == {name: Lake(clean, CHURN).read(name).num_rows for name in CHURN.table_order}


def test_an_unreachable_catalog_is_named_and_the_lake_stays_empty(
    tmp_path: Path, small_config: FlywheelConfig
) -> None:
    from tests.servers import free_port

    where = f"127.0.0.1:{free_port()}"  # nothing listens there
    catalog = {"type": "rest", "uri": f"http://flywheel:s3cr3t@{where}"}
    config = apply_overrides(small_config, {**SIZE, "lake.format": "iceberg", "lake.catalog": catalog})
    workdir = Workdir.at(tmp_path / "wd")
    with pytest.raises(DataError, match=rf"lake\.catalog.* http://{where} ") as raised:
        ops.generate(config, workdir)
    assert "s3cr3t" not in str(raised.value)  # the password is never printed
    assert Lake(workdir, CHURN).is_empty()


def test_lakes_sharing_a_catalog_keep_to_their_own_namespace(
    tmp_path: Path, small_config: FlywheelConfig
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    catalog = {"type": "sql", "uri": f"sqlite:///{shared / 'catalog.db'}", "warehouse": f"file://{shared}"}
    base = apply_overrides(small_config, {**SIZE, "lake.format": "iceberg", "lake.catalog": catalog})
    first, second = Workdir.at(tmp_path / "a"), Workdir.at(tmp_path / "b")
    ops.generate(base, first)
    ops.generate(apply_overrides(base, {"lake.namespace": "second_lake"}), second)
    ops.simulate(base, first, days=10, batch_id="only-a")
    a, b = Lake(first, CHURN), Lake(second, CHURN)
    assert (a.manifest()["iceberg"]["namespace"], b.manifest()["iceberg"]["namespace"]) == (
        "flywheel_churn",
        "second_lake",
    )
    assert [s["batch_id"] for s in b.iceberg().snapshots("orders")] == b.batch_ids()
    assert a.read("orders").num_rows > b.read("orders").num_rows  # a's new batch stays in a


def test_a_lake_never_undoes_another_lakes_snapshots(tmp_path: Path, small_config: FlywheelConfig) -> None:
    """Two lakes misconfigured into one namespace: the second's first commit is refused, and the
    first lake keeps every row (it used to drop the first lake's tables as a killed commit's)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    catalog = {"type": "sql", "uri": f"sqlite:///{shared / 'catalog.db'}", "warehouse": f"file://{shared}"}
    config = apply_overrides(small_config, {**SIZE, "lake.format": "iceberg", "lake.catalog": catalog})
    first, second = Workdir.at(tmp_path / "a"), Workdir.at(tmp_path / "b")
    ops.generate(config, first)
    rows = {name: Lake(first, CHURN).read(name).num_rows for name in CHURN.table_order}
    with pytest.raises(DataError, match=r"another lake.*lake\.namespace"):
        ops.generate(config, second)
    assert Lake(second, CHURN).is_empty()
    assert {name: Lake(first, CHURN).read(name).num_rows for name in CHURN.table_order} == rows


def test_a_commit_killed_in_a_staged_copy_is_still_undone(
    tmp_path: Path, small_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compiled pipeline's step commits in a copy of the workdir and pushes nothing back when it
    fails: the lake's next commit must still undo what the copy appended to the shared catalog —
    also for a lake made before lake ids (its manifest records none, and the copy made its own)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    catalog = {"type": "sql", "uri": f"sqlite:///{shared / 'catalog.db'}", "warehouse": f"file://{shared}"}
    config = apply_overrides(small_config, {**SIZE, "lake.format": "iceberg", "lake.catalog": catalog})
    for made_before_ids in (False, True):
        lake_root = tmp_path / f"lake-{made_before_ids}"
        workdir = Workdir.at(lake_root)
        config = apply_overrides(config, {"lake.namespace": f"ns_{made_before_ids}".lower()})
        ops.generate(config, workdir)
        if made_before_ids:
            manifest = json.loads(workdir.manifest.read_text())
            del manifest["iceberg"]["lake_id"]
            workdir.manifest.write_text(json.dumps(manifest))
            (workdir.lake / "lake_id").unlink()
        shutil.copytree(lake_root, tmp_path / f"copy-{made_before_ids}")
        copy = Workdir.at(tmp_path / f"copy-{made_before_ids}")
        if made_before_ids:
            (copy.lake / "lake_id").unlink(missing_ok=True)
        calls = kill_on_append(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            ops.simulate(config, copy, days=10, batch_id="in-the-copy")
        monkeypatch.undo()
        ops.simulate(config, workdir, days=10, batch_id="next")
        lake = Lake(workdir, CHURN)
        assert lake.batch_ids()[-1] == "next"
        current = [s["batch_id"] for s in lake.iceberg().snapshots(calls[0]) if s["current"]]
        assert current == ["next"], made_before_ids
