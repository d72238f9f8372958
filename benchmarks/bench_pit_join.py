"""Point-in-time join: Flywheel's DuckDB ASOF join against Feast's get_historical_features.

One run builds feature snapshots and labels from a generated lake, then joins the same entity rows
(labels) to the same feature rows three ways, each in a fresh process so that its peak memory is its
own: our join, Feast with the duckdb offline store, and Feast with the file (dask) offline store.
It prints the best and the first time of a few runs per process, peak RSS, rows in, rows out, rows
lost and value mismatches (against our join), and the ratios. The limit row, ``duckdb-asof``, is one
bare DuckDB ASOF join of the same files (TTL as a mask, no tie-breaking on the created timestamp):
the least any DuckDB-based join can cost. Goals: ours ≥ 10× faster than Feast-duckdb and ≥ 50×
faster than Feast-file, with 0 mismatches and 0 rows lost, and ours ≤ 1.2× the limit.

Usage: python benchmarks/bench_pit_join.py [--customers 30000] [--entities 200000] [--features 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHILD = r"""
import json, resource, sys, time
from datetime import timedelta
import pyarrow as pa, pyarrow.parquet as pq

method, folder, ttl_days, REPEATS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
entities = pq.read_table(f"{folder}/entities.parquet")
features_path = f"{folder}/features.parquet"
names = json.loads(open(f"{folder}/names.json").read())
ttl = timedelta(days=ttl_days)

timings = []
if method == "flywheel":
    from flywheel.features.pit import point_in_time_join
    for _ in range(REPEATS):
        started = time.perf_counter()
        out = point_in_time_join(entities, [features_path], entity_key="customer_id", entity_timestamp="event_timestamp",
                                 feature_timestamp="feature_timestamp", created_timestamp="created_timestamp",
                                 feature_names=names, ttl=ttl)
        timings.append(time.perf_counter() - started)
elif method == "duckdb-asof":  # the limit: one bare ASOF join on the same files, no tie-breaking, TTL as a mask
    import duckdb
    columns = ", ".join(f'CASE WHEN f.feature_timestamp >= e.event_timestamp - INTERVAL {ttl_days} DAY THEN f."{n}" END AS "{n}"' for n in names)
    query = (f"SELECT e.row_id, {columns} FROM read_parquet('{folder}/entities.parquet') e "
             f"ASOF LEFT JOIN read_parquet('{features_path}') f "
             "ON e.customer_id = f.customer_id AND e.event_timestamp >= f.feature_timestamp")
    for _ in range(REPEATS):
        started = time.perf_counter()
        out = duckdb.connect().sql(query).to_arrow_table()
        timings.append(time.perf_counter() - started)
else:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.data_format import ParquetFormat
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.types import Float64, Int64, String
    if method == "feast-duckdb":
        from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig as Offline
    else:
        from feast.infra.offline_stores.dask import DaskOfflineStoreConfig as Offline
    types = {"int64": Int64, "double": Float64, "string": String}
    schema = pq.read_schema(features_path)
    repo = f"{folder}/{method}"
    store = FeatureStore(config=RepoConfig(project="bench", provider="local", registry=f"{repo}-registry.db",
        offline_store=Offline(), online_store=SqliteOnlineStoreConfig(path=f"{repo}-online.db"),
        entity_key_serialization_version=3, repo_path=folder))
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    view = FeatureView(name="features_customer", entities=[customer], ttl=ttl,
        schema=[Field(name="customer_id", dtype=Int64)] + [Field(name=n, dtype=types[str(schema.field(n).type)]) for n in names],
        source=FileSource(path=features_path, timestamp_field="feature_timestamp",
                          created_timestamp_column="created_timestamp", file_format=ParquetFormat()))
    store.apply([customer, view])
    frame = entities.to_pandas()
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = store.get_historical_features(entity_df=frame, features=[f"features_customer:{n}" for n in names]).to_df()
        timings.append(time.perf_counter() - started)
    out = pa.Table.from_pandas(result[["row_id", *names]], preserve_index=False)
pq.write_table(out.select(["row_id", *names]), f"{folder}/out-{method}.parquet")
print(json.dumps({"first": timings[0], "seconds": min(timings), "rows_out": out.num_rows,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""

METHODS = ("flywheel", "duckdb-asof", "feast-duckdb", "feast-file")


def prepare(folder: Path, customers: int, n_entities: int, n_features: int) -> tuple[int, int, list[str]]:
    """Generate a lake, build snapshots and labels, and write the benchmark's inputs."""
    from flywheel.config import apply_overrides, default_config
    from flywheel.data import ops as data_ops
    from flywheel.features import labels, ops
    from flywheel.features.dataset import available_features
    from flywheel.features.snapshots import snapshot_files
    from flywheel.workdir import Workdir

    workdir = Workdir.at(folder / "wd")
    config = apply_overrides(
        default_config(), {"data.generator.customers": customers, "data.generator.start": date(2022, 1, 1)}
    )
    data_ops.generate(config, workdir)
    ops.build(config, workdir)
    files = snapshot_files(workdir)
    features = pa.concat_tables(pq.read_table(f) for f in files)
    if features.num_rows > n_features:  # keep the most recent snapshot dates
        features = features.slice(features.num_rows - n_features)
    pq.write_table(features, folder / "features.parquet")
    rng = np.random.default_rng(0)
    label_rows = labels.read(workdir)
    picks = np.sort(rng.choice(label_rows.num_rows, min(n_entities, label_rows.num_rows), replace=False))
    entities = label_rows.take(pa.array(picks)).rename_columns(["customer_id", "event_timestamp", "label"])
    entities = entities.append_column("row_id", pa.array(np.arange(entities.num_rows, dtype=np.int64)))
    pq.write_table(entities, folder / "entities.parquet")
    names = list(available_features(config, workdir))
    (folder / "names.json").write_text(json.dumps(names))
    return entities.num_rows, features.num_rows, names


def compare(folder: Path, method: str, names: list[str]) -> tuple[int, int]:
    """Rows lost and rows with any value different from our join."""
    import pandas as pd

    ours = pq.read_table(folder / "out-flywheel.parquet").to_pandas().set_index("row_id").sort_index()
    theirs = pq.read_table(folder / f"out-{method}.parquet").to_pandas()
    lost = len(set(ours.index) - set(theirs["row_id"]))
    theirs = theirs.drop_duplicates("row_id").set_index("row_id").reindex(ours.index)
    differs = pd.Series(False, index=ours.index)
    for name in names:
        a, b = ours[name], theirs[name]
        same = (a == b) | (a.isna() & b.isna())
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            same |= np.isclose(a.astype(float), b.astype(float), rtol=1e-12, atol=0, equal_nan=True)
        differs |= ~same.fillna(False).astype(bool)
    return lost, int(differs.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=30_000)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--ttl-days", type=int, default=30)
    parser.add_argument(
        "--repeats", type=int, default=3, help="Runs per method in one process; best is reported."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_entities, n_features, names = prepare(folder, args.customers, args.entities, args.features)
        print(
            f"entity rows {n_entities:,} × feature rows {n_features:,} ({len(names)} features, TTL {args.ttl_days} d)"
        )
        results = {}
        for method in METHODS:
            repeats = 1 if method == "feast-file" else args.repeats  # the dask store takes ~45 s a run
            run = subprocess.run(
                [sys.executable, "-c", CHILD, method, str(folder), str(args.ttl_days), str(repeats)],
                capture_output=True,
                text=True,
            )
            if run.returncode:
                print(f"{method}: failed\n{run.stderr[-2000:]}")
                continue
            results[method] = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"{'method':<14}{'best s':>8}{'first s':>9}{'peak GB':>9}{'rows in':>10}{'rows out':>10}{'lost':>8}"
            f"{'mismatch':>10}{'ratio best':>12}{'ratio first':>13}"
        )
        ours = results["flywheel"]
        for method, r in results.items():
            lost, mismatched = compare(folder, method, names) if method != "flywheel" else (0, 0)
            print(
                f"{method:<14}{r['seconds']:>8.2f}{r['first']:>9.2f}{r['peak_gb']:>9.2f}{n_entities:>10,}"
                f"{r['rows_out']:>10,}{lost:>8,}{mismatched:>10,}{r['seconds'] / ours['seconds']:>11.1f}×"
                f"{r['first'] / ours['first']:>12.1f}×"
            )

        if "duckdb-asof" in results:
            limit = results["duckdb-asof"]
            print(
                f"Flywheel ÷ limit (bare DuckDB ASOF join): {ours['seconds'] / limit['seconds']:.2f}× best, "
                f"{ours['first'] / limit['first']:.2f}× first (goal ≤ 1.2×)"
            )


if __name__ == "__main__":
    main()
