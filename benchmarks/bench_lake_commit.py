"""Committing a batch to the Iceberg lake against the Parquet lake: the same generated history in both
formats, then the same 30-day batch committed to each (validation, staging and the commit itself),
and the features read back from each lake by DuckDB.

The goal from issue 18: an Iceberg commit of a 30-day batch within 2× the Parquet commit, and reading
the lake for features no slower than today.

Usage: python benchmarks/bench_lake_commit.py [--customers 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from flywheel.config import apply_overrides, default_config
from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.features import ops as feature_ops
from flywheel.workdir import Workdir

FORMATS = ("parquet", "iceberg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{datetime.now():%Y-%m-%d %H:%M}  {args.customers:,} customers, a {args.days}-day batch")
    commits: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    reads: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for fmt in FORMATS if repeat % 2 == 0 else reversed(FORMATS):  # alternate the order
                config = apply_overrides(
                    default_config(), {"data.generator.customers": args.customers, "lake.format": fmt}
                )
                workdir = Workdir.at(Path(tmp) / f"{fmt}-{repeat}")
                ops.generate(config, workdir)
                lake = Lake(workdir, config.spec)
                batch = config.spec.generator.simulate(
                    lake, lake.latest_synthetic(), args.days, "none", f"next-{repeat}"
                )
                started = time.perf_counter()
                ops.commit(config.spec, workdir, batch)
                commits[fmt].append(time.perf_counter() - started)
                started = time.perf_counter()
                feature_ops.build(config, workdir)
                reads[fmt].append(time.perf_counter() - started)
    print(f"{'':32}{'parquet':>10}{'iceberg':>10}{'ratio':>8}")
    for label, found in (("commit of the batch, s", commits), ("features build over the lake, s", reads)):
        parquet, iceberg = (statistics.median(found[fmt]) for fmt in FORMATS)
        print(f"{label:32}{parquet:10.2f}{iceberg:10.2f}{iceberg / parquet:7.2f}×")
    print(f"(medians of {args.repeats}; every run: {commits} {reads})")


if __name__ == "__main__":
    main()
