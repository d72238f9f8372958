"""Spark parity: on the same lake, ``features.engine: spark`` gives DuckDB's snapshots, context views,
labels, training set and batch scores — the same rows, values and nulls — for every use case, and
reads an Iceberg lake's data files.

Spark runs in local mode in this process (one session for the module, on 127.0.0.1). The test setup
installs Java 17 from the Debian packages when the machine lacks it; PySpark comes with the dev
extras. Doubles are compared to 1e-12 relative: DuckDB's own parallel ``avg`` differs from run to
run in the last bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.errors import FlywheelError
from flywheel.features import dataset
from flywheel.features import ops as feature_ops
from flywheel.features.snapshots import CREATED_COLUMN, context_files, snapshot_files
from flywheel.registry import registry
from flywheel.registry.versions import load_version
from flywheel.serving.batch import score_latest, score_rows
from flywheel.training import train
from flywheel.workdir import Workdir
from tests.integration.test_use_cases import small
from tests.servers import ensure_apt_package

pytestmark = pytest.mark.spark
# all of a small lake's dates in a few Spark queries (each costs about a second to plan)
SPARK = {
    "features.engine": "spark",
    "spark.master": "local[2]",
    "spark.driver_memory": "1g",
    "spark.chunk_dates": 64,
}
CASES = {
    "churn": ("churn", {}),
    "bank": ("bank", {}),
    "credit": ("credit", {}),
    "toy": ("tests.usecase_toy", {}),
    "churn-iceberg": ("churn", {"lake.format": "iceberg"}),
}


@pytest.fixture(scope="module")
def spark_ready() -> None:
    pytest.importorskip("pyspark", reason="PySpark comes with the dev extras: pip install -e '.[dev]'")
    ensure_apt_package("java", "openjdk-17-jre-headless")


@pytest.fixture(scope="module", params=list(CASES))
def both(
    request: pytest.FixtureRequest, spark_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FlywheelConfig, Workdir, FlywheelConfig, Workdir]:
    """One generated lake, built once with each engine (DuckDB's copy also gets a champion)."""
    use_case, overrides = CASES[request.param]
    duck_config = apply_overrides(small(use_case), overrides)
    spark_config = apply_overrides(duck_config, SPARK)
    root = tmp_path_factory.mktemp(request.param)
    duck = Workdir.at(root / "duckdb")
    ops.generate(duck_config, duck)
    shutil.copytree(duck.root, root / "spark")
    spark = Workdir.at(root / "spark")
    for config, workdir in ((duck_config, duck), (spark_config, spark)):
        feature_ops.build(config, workdir)
        dataset.build(config, workdir)
    return duck_config, duck, spark_config, spark


def assert_same(duck: pa.Table, spark: pa.Table, keys: list[str], what: str) -> None:
    assert spark.schema.remove_metadata() == duck.schema.remove_metadata(), what
    assert spark.num_rows == duck.num_rows, what
    order = [(k, "ascending") for k in keys]
    duck, spark = duck.sort_by(order), spark.sort_by(order)
    for name in duck.column_names:
        a, b = duck.column(name).combine_chunks(), spark.column(name).combine_chunks()
        assert a.is_null().equals(b.is_null()), f"{what}: nulls of {name}"
        if pa.types.is_floating(a.type):
            np.testing.assert_allclose(
                b.to_numpy(zero_copy_only=False), a.to_numpy(zero_copy_only=False), rtol=1e-12, err_msg=what
            )
        else:
            assert a.equals(b), f"{what}: values of {name}"


def key_tuples(table: pa.Table, keys: list[str]) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))


def test_snapshots_and_context_views_are_the_same(both) -> None:
    duck_config, duck, _, spark = both
    key = duck_config.spec.snapshot.entity.join_key
    duck_files, spark_files = snapshot_files(duck), snapshot_files(spark)
    assert [Path(f).name for f in spark_files] == [Path(f).name for f in duck_files]
    read = lambda files: pa.concat_tables(pq.read_table(f) for f in files).drop_columns([CREATED_COLUMN])  # noqa: E731
    assert_same(read(duck_files), read(spark_files), [key, "feature_timestamp"], "snapshots")
    duck_context, spark_context = context_files(duck), context_files(spark)
    assert list(spark_context) == list(duck_context)
    for name, path in duck_context.items():
        assert_same(read([path]), read([spark_context[name]]), ["feature_timestamp"], name)


def test_labels_are_the_same(both) -> None:
    duck_config, duck, _, spark = both
    labels = lambda workdir: pq.read_table(workdir.features / "labels.parquet").replace_schema_metadata(None)  # noqa: E731
    keys = [duck_config.spec.entity.join_key, "label_timestamp"]
    assert_same(labels(duck), labels(spark), keys, "labels")


def test_the_training_set_is_the_same(both) -> None:
    duck_config, duck, _, spark = both
    dataset_id = dataset.latest(duck).name
    assert dataset.latest(spark).name == dataset_id  # same inputs: the same id
    keys = [duck_config.spec.entity.join_key, "label_timestamp"]
    for split in ("train", "valid", "test"):
        assert_same(
            pq.read_table(duck.datasets / dataset_id / f"{split}.parquet"),
            pq.read_table(spark.datasets / dataset_id / f"{split}.parquet"),
            keys,
            split,
        )


def test_batch_scores_are_the_same(both, tmp_path: Path) -> None:
    """Snapshot scoring where the model needs only snapshots; otherwise (bank's contacts, credit's
    applications) scoring rows with their request features, here the test split's — and so for the
    Iceberg case, whose snapshots the plain churn case already scores."""
    duck_config, duck, spark_config, _ = both
    result = train.train(duck_config, duck)
    registry.register(duck_config, duck, result.run_id, result.model_uri)
    registry.promote(duck_config, duck)
    spec = duck_config.spec
    if not spec.labels.request_features and duck_config.lake.format != "iceberg":
        on_duck = score_latest(duck_config, duck, tmp_path / "duckdb.parquet")
        on_spark = score_latest(spark_config, duck, tmp_path / "spark.parquet")  # the same snapshots
        keys = [spec.snapshot.entity.join_key]
    else:
        if spec.labels.request_features:
            with pytest.raises(FlywheelError, match="also needs"):  # a snapshot lacks the request
                score_latest(spark_config, duck, tmp_path / "spark.parquet")
        test = pq.read_table(dataset.latest(duck) / "test.parquet")
        keys = list(dict.fromkeys([spec.entity.join_key, spec.snapshot.entity.join_key]))
        rows = test.select([*keys, *spec.labels.request_features]).append_column(
            "as_of", test.column("label_timestamp")
        )
        on_duck = score_rows(duck_config, duck, rows, tmp_path / "duckdb.parquet")
        on_spark = score_rows(spark_config, duck, rows, tmp_path / "spark.parquet")
        scored = pq.read_table(tmp_path / "duckdb.parquet")
        expected = load_version(duck_config, duck, on_duck.version).model.predict_proba(test.to_pandas())
        by_row = {key: row for row, key in enumerate(key_tuples(test, keys))}
        order = [by_row[key] for key in key_tuples(scored, keys)]
        first = f"{spec.api.score_field}_{spec.classes[0]}" if spec.classes else spec.api.score_field
        column = expected[:, 0] if spec.classes else expected
        np.testing.assert_allclose(scored.column(first).to_numpy(), column[order], rtol=1e-12)  # as trained
    assert on_spark.rows == on_duck.rows > 0
    assert_same(
        pq.read_table(tmp_path / "duckdb.parquet"), pq.read_table(tmp_path / "spark.parquet"), keys, "scores"
    )
