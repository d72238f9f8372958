"""Scale of the feature pipeline: features, labels and the training set for N customers, on DuckDB
and on Spark (local mode), the same lake in one run.

Generates a lake of N customers (default 1M, the architecture's large target), then for each engine,
in a fresh process, times a full ``features build`` (snapshots + labels) and ``features dataset``
(point-in-time join + split) into its own copy of the workdir, and samples the peak memory of that
process and its children (Spark's JVM) every 0.2 s. Then checks the engines' outputs are the same:
every snapshot file, the labels and each split of the training set (doubles to 1e-12 relative).
Goal: 1M customers in ≤ 5 minutes and ≤ 8 GB on DuckDB.

Usage: python benchmarks/bench_features_scale.py [--customers 1000000] [--engine duckdb|spark|both]
       [--spark-chunk-dates 8] [--spark-driver-memory 6g] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

CHILD = r"""
import json, sys, time
from flywheel.config import apply_overrides, default_config
from flywheel.features import dataset, ops
from flywheel.workdir import Workdir

config = apply_overrides(default_config(), json.loads(sys.argv[2]))
workdir = Workdir.at(sys.argv[1])
started = time.perf_counter()
if config.features.engine == "spark":
    from flywheel.data.engine import spark_session
    spark_session(config.spark)
session_s = time.perf_counter() - started
started = time.perf_counter()
built, labels = ops.build(config, workdir, full=True)
build_s = time.perf_counter() - started
started = time.perf_counter()
result = dataset.build(config, workdir)
dataset_s = time.perf_counter() - started
print(json.dumps({"snapshot_rows": built.rows_written, "dates": built.dates_total, "label_rows": labels.rows,
                  "dataset_id": result.dataset_id,
                  "dataset_rows": sum(s["rows"] for s in result.metadata["splits"].values()),
                  "session_s": session_s, "build_s": build_s, "dataset_s": dataset_s}))
"""

GOAL_SECONDS, GOAL_GB = 300.0, 8.0


def run_engine(workdir: Path, overrides: dict) -> dict:
    """The child's figures, plus the peak RSS of it and its descendants (sampled)."""
    log = open(workdir.parent / f"{workdir.name}.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(workdir), json.dumps(overrides)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    done.set()
    sampler.join()
    log.close()
    if process.returncode != 0:
        tail = "".join(Path(log.name).read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(
            f"the {overrides.get('features.engine')} run failed (exit {process.returncode}):\n{tail}"
        )
    return {**json.loads(out.strip().splitlines()[-1]), "peak_gb": peak / 1024**3}


def same(a: pa.Table, b: pa.Table, keys: list[str]) -> list[str]:
    """Columns whose values or nulls differ (doubles to 1e-12 relative), after sorting by ``keys``."""
    if a.num_rows != b.num_rows or a.column_names != b.column_names:
        return [f"shape {a.num_rows}×{a.column_names} vs {b.num_rows}×{b.column_names}"]
    order = [(k, "ascending") for k in keys]
    a, b = a.sort_by(order), b.sort_by(order)
    differ = []
    for name in a.column_names:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        if not x.is_null().equals(y.is_null()):
            differ.append(f"{name} (nulls)")
        elif pa.types.is_floating(x.type):
            u, v = x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False)
            if not np.allclose(u, v, rtol=1e-12, atol=0, equal_nan=True):
                differ.append(name)
        elif not x.equals(y):
            differ.append(name)
    return differ


def compare(duck: Path, spark: Path, dataset_id: str) -> tuple[int, list[str]]:
    """Tables compared, and the differences found between the two workdirs' outputs."""
    key = "customer_id"
    problems, checked = [], 0
    for path in sorted((duck / "features" / "snapshots").glob("*.parquet")):
        other = spark / "features" / "snapshots" / path.name
        if not other.exists():
            problems.append(f"snapshot {path.name} missing on Spark")
            continue
        a, b = (pq.read_table(p).drop_columns(["created_timestamp"]) for p in (path, other))
        problems += [f"snapshot {path.name}: {d}" for d in same(a, b, [key])]
        checked += 1
    a, b = (
        pq.read_table(w / "features" / "labels.parquet").replace_schema_metadata(None) for w in (duck, spark)
    )
    problems += [f"labels: {d}" for d in same(a, b, [key, "label_timestamp"])]
    for split in ("train", "valid", "test"):
        a, b = (pq.read_table(w / "datasets" / dataset_id / f"{split}.parquet") for w in (duck, spark))
        problems += [f"{split}: {d}" for d in same(a, b, [key, "label_timestamp"])]
    return checked + 4, problems


def _megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["duckdb", "spark", "both"], default="both")
    parser.add_argument("--spark-chunk-dates", type=int, default=8)
    parser.add_argument("--spark-driver-memory", default="6g")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (a lake there is reused).")
    args = parser.parse_args()
    from flywheel.config import apply_overrides, default_config
    from flywheel.data import ops as data_ops
    from flywheel.workdir import Workdir

    engines = ["duckdb", "spark"] if args.engine == "both" else [args.engine]
    size = {"data.generator.customers": args.customers}
    overrides = {
        "duckdb": {**size, "features.engine": "duckdb"},
        "spark": {
            **size,
            "features.engine": "spark",
            "spark.chunk_dates": args.spark_chunk_dates,
            "spark.driver_memory": args.spark_driver_memory,
        },
    }
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        lake = Path(tmp) / "lake"
        started = time.perf_counter()
        result = data_ops.generate(apply_overrides(default_config(), size), Workdir.at(lake))
        print(
            f"lake: {args.customers:,} customers, {result.rows['orders']:,} orders, "
            f"{result.rows['order_items']:,} order items, {_megabytes(lake / 'lake'):.0f} MB "
            f"({time.perf_counter() - started:.0f} s to generate)",
            flush=True,
        )
        figures = {}
        for engine in engines:
            workdir = Path(tmp) / engine
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.copytree(lake, workdir)
            r = figures[engine] = run_engine(workdir, overrides[engine])
            r["snapshot_mb"] = _megabytes(workdir / "features" / "snapshots")
            r["dataset_mb"] = _megabytes(workdir / "datasets")
            total = r["build_s"] + r["dataset_s"]
            print(
                f"{engine}: snapshots {r['snapshot_rows']:,} rows over {r['dates']} dates, labels "
                f"{r['label_rows']:,}, training set {r['dataset_rows']:,} rows ({r['dataset_id']})\n"
                f"  features + labels {r['build_s']:.1f} s, training set {r['dataset_s']:.1f} s, "
                f"total {total:.1f} s (+ {r['session_s']:.1f} s session start), peak {r['peak_gb']:.2f} GB\n"
                f"  on disk: snapshots {r['snapshot_mb']:.0f} MB, training set {r['dataset_mb']:.0f} MB",
                flush=True,
            )
        if "duckdb" in figures:
            r = figures["duckdb"]
            total = r["build_s"] + r["dataset_s"]
            print(f"duckdb goal ratio: time {total / GOAL_SECONDS:.2f}, memory {r['peak_gb'] / GOAL_GB:.2f}")
        if len(figures) == 2:
            d, s = figures["duckdb"], figures["spark"]
            ratio = (s["build_s"] + s["dataset_s"]) / (d["build_s"] + d["dataset_s"])
            print(f"spark ÷ duckdb: time {ratio:.2f}×, memory {s['peak_gb'] / d['peak_gb']:.2f}×")
            assert d["dataset_id"] == s["dataset_id"], "the engines built different training sets"
            checked, problems = compare(Path(tmp) / "duckdb", Path(tmp) / "spark", d["dataset_id"])
            print(f"same output: {checked} tables compared, {len(problems)} differences")
            for problem in problems[:20]:
                print("  " + problem)


if __name__ == "__main__":
    main()
