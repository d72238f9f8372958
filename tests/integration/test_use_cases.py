"""One conformance suite for every use case (churn, bank marketing, credit score, and one defined
outside the package): a deterministic generator, bad batches rejected with the lake unchanged, no
leakage, labels only where observable, online = offline. Then the out-of-package use case end to
end."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig, default_config
from flywheel.data import ops
from flywheel.data.engine import DuckEngine
from flywheel.data.lake import Lake
from flywheel.data.validation import BatchRejected
from flywheel.features import dataset, labels, online
from flywheel.features import ops as feature_ops
from flywheel.workdir import Workdir
from tests.conftest import SMALL, tree_digest

FAST = {"registry.gates.max_p99_latency_ms": 60_000.0, "training.tuning.method": "none"}
SETTINGS = {
    "churn": {key: value for key, value in SMALL.items() if key.startswith("data.")},
    "bank": {
        "data.generator.clients": 1500,
        "data.generator.contacts_per_month": 400,
        "data.generator.start": date(2008, 5, 1),
        "data.generator.end": date(2009, 9, 1),
    },
    "credit": {
        "data.generator.customers": 600,
        "data.generator.start": date(2024, 1, 1),
        "data.generator.end": date(2024, 9, 1),
    },
    "tests.usecase_toy": {"data.generator.machines": 120, "data.generator.days": 150},
}


def small(use_case: str) -> FlywheelConfig:
    return default_config(use_case, **SETTINGS[use_case], **FAST)


@pytest.fixture(scope="module", params=list(SETTINGS))
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FlywheelConfig, Workdir]:
    """A small generated lake of each use case with its features, labels and training set; read-only."""
    config = small(request.param)
    workdir = Workdir.at(tmp_path_factory.mktemp(config.spec.name) / "wd")
    ops.generate(config, workdir)
    feature_ops.build(config, workdir)
    dataset.build(config, workdir)
    return config, workdir


def test_the_generator_is_deterministic(built) -> None:
    config, _ = built
    spec = config.spec
    first = spec.generator.generate(config.data.generator, "a")
    second = spec.generator.generate(config.data.generator, "a")
    assert first.tables.keys() == second.tables.keys()
    for name, table in first.tables.items():
        assert table.equals(second.tables[name]), name
        assert table.schema.equals(spec.tables[name].arrow_schema), name


def test_a_bad_batch_is_rejected_and_the_lake_is_unchanged(built, tmp_path: Path) -> None:
    """A simulated batch whose first table repeats a key already in the lake: rejected, naming the
    table and the key; the lake's files and manifest are byte for byte as they were."""
    config, source = built
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(source.lake, workdir.lake)
    spec = config.spec
    lake = Lake(workdir, spec)
    batch = spec.generator.simulate(lake, lake.latest_synthetic(), 14, spec.generator.scenarios[0], "bad")
    name = next(n for n in spec.table_order if batch.tables.get(n) is not None and batch.tables[n].num_rows)
    key = spec.tables[name].primary_key
    table = batch.tables[name]
    held = lake.read(name).column(key)[0]
    keys = table.column(key).to_pylist()
    keys[0] = held.as_py()
    batch.tables[name] = table.set_column(
        table.schema.get_field_index(key), key, pa.array(keys, table.schema.field(key).type)
    )
    before = tree_digest(workdir.lake)
    with pytest.raises(BatchRejected) as rejected:
        ops.commit(spec, workdir, batch)
    failure = next(f for f in rejected.value.report.failures if f.check == "duplicate_key")
    assert (failure.table, failure.column) == (name, key)
    assert tree_digest(workdir.lake) == before


def test_no_feature_comes_from_after_its_label_time(built) -> None:
    """Every training row's snapshot is from at or before its label time; no feature is one the use
    case only knows later (bank: the call's duration)."""
    _, workdir = built
    folder = dataset.latest(workdir)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert "duration" not in metadata["features"]
    for split in ("train", "valid", "test"):
        rows = pq.read_table(folder / f"{split}.parquet")
        matched = rows.column("feature_timestamp")
        later = pc.greater(matched, rows.column(labels.TIMESTAMP_COLUMN).cast(matched.type))
        assert not pc.any(later).as_py(), split


def test_labels_exist_only_where_the_lake_has_observed_them(built) -> None:
    config, workdir = built
    spec = config.spec
    rows = labels.read(workdir)
    _, last = labels.observed_range(spec, Lake(workdir, spec).engine(DuckEngine()))
    latest = pc.max(rows.column(labels.TIMESTAMP_COLUMN)).as_py()
    assert latest + timedelta(days=config.labels.horizon_days) <= last
    codes = set(range(len(spec.classes) or 2))  # binary: 0 and 1; multiclass: one code per class
    assert rows.num_rows and set(pc.unique(rows.column(config.labels.label_column)).to_pylist()) == codes


def test_online_equals_offline(built, tmp_path: Path) -> None:
    config, source = built
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(source.root, workdir.root)
    online.apply(config, workdir)
    online.materialize(config, workdir)
    report = online.check_skew(config, workdir, sample=100)
    assert report.checked > 0 and report.ok, report.mismatches[:3]


def test_an_out_of_package_use_case_runs_end_to_end(tmp_path: Path) -> None:
    """generate → validate → features → train → register → serve → monitor, for a use case defined in
    the tests folder and chosen by its dotted path in a config file: nothing in src/flywheel names it."""
    from flywheel.config import load_config
    from flywheel.monitoring import monitor, performance, traffic
    from flywheel.pipeline.runner import run_pipeline
    from flywheel.registry import registry
    from flywheel.serving.local import call, local_service

    path = tmp_path / "toy.yaml"
    path.write_text(
        "use_case: tests.usecase_toy\n"
        f"workdir: {tmp_path / 'wd'}\n"
        "data: {generator: {machines: 120, days: 150}}\n"
        "registry: {gates: {max_p99_latency_ms: 60000}}\n"
    )
    config = load_config(path)
    workdir = Workdir.at(config.workdir)
    assert (config.tracking.experiment, config.registry.model_name) == ("toy", "toy-model")
    ops.generate(config, workdir)
    assert ops.validate(config.spec, workdir).ok
    feature_ops.build(config, workdir)
    record = run_pipeline(config, workdir)
    assert record.status == "SUCCEEDED"
    champion = registry.champion_version(config, workdir)
    assert champion is not None
    with local_service(config, workdir) as url:
        answer = call(f"{url}/v1/predict", {"machine_id": 1})
        assert answer["model_version"] == champion and 0 <= answer["failure_probability"] <= 1
        schema = call(f"{url}/openapi.json")
        assert "machine_id" in schema["components"]["schemas"]["PredictRequest"]["properties"]
        sent = traffic.simulate(config, workdir, url, days=56, per_date=40)
    assert sent.requests > 0
    report = performance.evaluate(config, workdir)
    assert any(p.labelled for p in report.periods)
    drift, _, _ = monitor.drift(config, workdir, source="snapshot")
    assert drift.columns


def test_use_cases_side_by_side_share_one_tracking_store(built, tmp_path: Path) -> None:
    """Each use case trains into its own experiment and registers its own model name, so one MLflow
    store (a server, or here one SQLite file) holds them all."""
    import mlflow

    from flywheel.config import apply_overrides
    from flywheel.registry import registry
    from flywheel.training import train

    config, source = built
    uri = f"sqlite:///{tmp_path.parent.parent / 'shared-tracking.db'}"  # one store for every param
    config = apply_overrides(config, {"tracking.uri": uri})
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(source.root, workdir.root)
    result = train.train(config, workdir)
    registry.register(config, workdir, result.run_id, result.model_uri)
    client = mlflow.MlflowClient(uri)
    assert client.get_experiment_by_name(config.spec.name) is not None
    names = {model.name for model in client.search_registered_models()}
    assert f"{config.spec.name}-model" in names and config.registry.model_name == f"{config.spec.name}-model"
    # whichever use cases trained here before: each model's versions come from its own experiment only
    for name in names:
        for version in client.search_model_versions(f"name='{name}'"):
            experiment = client.get_experiment(client.get_run(version.run_id).info.experiment_id).name
            assert experiment == name.removesuffix("-model"), (name, experiment)
