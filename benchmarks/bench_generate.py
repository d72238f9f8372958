"""Generator throughput: rows/s and peak memory at 100k and 1M users.

Each size runs in a fresh process (so peak RSS is its own) and is timed twice: the generator alone
(``generate_batch``) and the full ``flywheel data generate`` path (generate + validate + atomic write
to the lake). The goal from the issue: 1M users with their orders in ≤ 120 s and ≤ 8 GB on 2 cores.

Usage: python benchmarks/bench_generate.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from flywheel.config import apply_overrides, default_config
from flywheel.data import ops
from flywheel.usecases.churn.generator import generate_batch
from flywheel.workdir import Workdir

customers, workdir = int(sys.argv[1]), sys.argv[2]
config = apply_overrides(default_config(), {"data.generator.customers": customers})
started = time.perf_counter()
batch = generate_batch(config.data.generator)
generate_s = time.perf_counter() - started
rows = sum(t.num_rows for t in batch.tables.values())
del batch
started = time.perf_counter()
ops.generate(config, Workdir.at(workdir))
end_to_end_s = time.perf_counter() - started
peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
print(json.dumps({"customers": customers, "rows": rows, "generate_s": generate_s,
                  "end_to_end_s": end_to_end_s, "peak_rss_gb": peak_gb}))
"""

GOAL_SECONDS, GOAL_GB = 120.0, 8.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(
        f"{'users':>10} {'rows':>12} {'generate s':>11} {'rows/s':>12} {'+validate+write s':>18} "
        f"{'rows/s':>12} {'peak GB':>8} {'goal ratio (time, mem)':>24}"
    )
    for customers in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(customers), f"{tmp}/wd"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{customers:>10,} {r['rows']:>12,} {r['generate_s']:>11.1f} {r['rows'] / r['generate_s']:>12,.0f} "
            f"{r['end_to_end_s']:>18.1f} {r['rows'] / r['end_to_end_s']:>12,.0f} {r['peak_rss_gb']:>8.2f} "
            f"{r['end_to_end_s'] / GOAL_SECONDS:>11.2f}, {r['peak_rss_gb'] / GOAL_GB:.2f}"
        )


if __name__ == "__main__":
    main()
