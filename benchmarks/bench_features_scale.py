"""Scale of the feature pipeline: features, labels and the training set for N customers.

Generates a lake of N customers (default 1M, the architecture's large target), then, in a fresh
process so that its peak memory is its own, times a full ``features build`` (snapshots + labels)
and ``features dataset`` (point-in-time join + split). Goal: 1M customers in ≤ 5 minutes and ≤ 8 GB.

Usage: python benchmarks/bench_features_scale.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time
from flywheel.config import apply_overrides, default_config
from flywheel.features import dataset, ops
from flywheel.workdir import Workdir

config = apply_overrides(default_config(), {"data.generator.customers": int(sys.argv[2])})
workdir = Workdir.at(sys.argv[1])
started = time.perf_counter()
built, labels = ops.build(config, workdir, full=True)
build_s = time.perf_counter() - started
started = time.perf_counter()
result = dataset.build(config, workdir)
dataset_s = time.perf_counter() - started
print(json.dumps({"snapshot_rows": built.rows_written, "dates": built.dates_total, "label_rows": labels.rows,
                  "dataset_rows": sum(s["rows"] for s in result.metadata["splits"].values()),
                  "build_s": build_s, "dataset_s": dataset_s,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""

GOAL_SECONDS, GOAL_GB = 300.0, 8.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    from flywheel.config import apply_overrides, default_config
    from flywheel.data import ops as data_ops
    from flywheel.workdir import Workdir

    with tempfile.TemporaryDirectory() as tmp:
        config = apply_overrides(default_config(), {"data.generator.customers": args.customers})
        started = time.perf_counter()
        result = data_ops.generate(config, Workdir.at(f"{tmp}/wd"))
        print(
            f"lake: {args.customers:,} customers, {result.rows['orders']:,} orders, "
            f"{result.rows['order_items']:,} order items ({time.perf_counter() - started:.0f} s to generate)"
        )
        out = subprocess.run(
            [sys.executable, "-c", CHILD, f"{tmp}/wd", str(args.customers)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
    total = r["build_s"] + r["dataset_s"]
    print(
        f"snapshots: {r['snapshot_rows']:,} rows over {r['dates']} dates; labels: {r['label_rows']:,}; "
        f"training set: {r['dataset_rows']:,} rows"
    )
    print(
        f"features + labels {r['build_s']:.1f} s, training set {r['dataset_s']:.1f} s, total {total:.1f} s, "
        f"peak {r['peak_gb']:.2f} GB; goal ratio time {total / GOAL_SECONDS:.2f}, memory {r['peak_gb'] / GOAL_GB:.2f}"
    )


if __name__ == "__main__":
    main()
