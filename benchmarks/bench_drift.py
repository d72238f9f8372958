"""Drift detection: Flywheel's profile-based engine against Evidently 0.7's DataDriftPreset.

Builds a reference and a current frame (default 1M rows × 20 numeric columns, five of them shifted,
plus a mixed-type case with three categorical columns), then in fresh processes (so peak memory is
each one's own): Flywheel profiles the reference and compares the current frame; Evidently runs
DataDriftPreset on the same frames. Prints time, peak RSS, the per-column decisions and how many
agree, and the ratio. Goal: ≥ 50× faster with the same decisions where the statistic is the same.

Usage: python benchmarks/bench_drift.py [--rows 1000000]   (needs `pip install evidently`)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SHIFTED_NUMERIC = (0, 4, 8, 12, 16)
SHIFTED = {f"x{i}" for i in SHIFTED_NUMERIC} | {"cat0"}
CHILD = r"""
import json, resource, sys, time
import pandas as pd
method, folder, categorical = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
reference = pd.read_parquet(f"{folder}/reference.parquet")
current = pd.read_parquet(f"{folder}/current.parquet")
numeric = [c for c in reference.columns if c not in categorical]
started = time.perf_counter()
if method == "flywheel":
    from flywheel.monitoring.drift import compare
    from flywheel.features.profile import build_profile
    report = compare(build_profile(reference, categorical), current)
    decisions = {c.column: {"drifted": c.drifted, "score": c.score, "test": c.test} for c in report.columns}
else:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                               Dataset.from_pandas(reference, data_definition=definition))
    decisions = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            score, threshold = float(metric["value"]), config["threshold"]
            p_value = "p_value" in config.get("method", "") or "test" in config.get("method", "").lower()
            decisions[config["column"]] = {"drifted": score < threshold if p_value else score >= threshold,
                                           "score": score, "test": config["method"]}
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                  "decisions": decisions}))
"""


def frames(rows: int, mixed: bool, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({f"x{i}": rng.gamma(2 + i % 4, 1 + i, rows) for i in range(20)})
    current = pd.DataFrame({f"x{i}": rng.gamma(2 + i % 4, 1 + i, rows) for i in range(20)})
    for i in SHIFTED_NUMERIC:  # five shifted columns: 10 % … 50 % of a standard deviation
        current[f"x{i}"] += (0.1 + i / 40) * reference[f"x{i}"].std()
    categorical = []
    if mixed:
        for j, shares in enumerate(([0.5, 0.3, 0.2], [0.25] * 4, [0.7, 0.3])):
            levels = [f"c{k}" for k in range(len(shares))]
            reference[f"cat{j}"] = rng.choice(levels, rows, p=shares)
            moved = shares[::-1] if j == 0 else shares
            current[f"cat{j}"] = rng.choice(levels, rows, p=moved)
            categorical.append(f"cat{j}")
    return reference, current, categorical


def run(method: str, folder: Path, categorical: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(folder), json.dumps(categorical)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"{method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    for mixed in (False, True):
        reference, current, categorical = frames(args.rows, mixed)
        with tempfile.TemporaryDirectory() as tmp:
            reference.to_parquet(f"{tmp}/reference.parquet")
            current.to_parquet(f"{tmp}/current.parquet")
            ours, theirs = run("flywheel", Path(tmp), categorical), run("evidently", Path(tmp), categorical)
        columns = sorted(ours["decisions"])
        agree = sum(ours["decisions"][c]["drifted"] == theirs["decisions"][c]["drifted"] for c in columns)
        case = f"{args.rows:,} rows × {reference.shape[1]} columns" + (" (3 categorical)" if mixed else "")
        print(f"\n{case}")
        print(f"{'engine':<12}{'seconds':>9}{'peak GB':>9}{'drifted':>9}")
        for name, r in (("flywheel", ours), ("evidently", theirs)):
            print(
                f"{name:<12}{r['seconds']:>9.2f}{r['peak_gb']:>9.2f}{sum(d['drifted'] for d in r['decisions'].values()):>9}"
            )
        print(
            f"same decision on {agree}/{len(columns)} columns; Flywheel faster by "
            f"{theirs['seconds'] / ours['seconds']:.1f}×"
        )
        unshifted = [c for c in columns if c not in SHIFTED]
        for name, r in (("flywheel", ours), ("evidently", theirs)):
            alarms = sum(r["decisions"][c]["drifted"] for c in unshifted)
            print(
                f"  {name}: false alarms on the {len(unshifted)} unshifted columns: {alarms} ({alarms / len(unshifted):.0%})"
            )
        for c in columns:
            a, b = ours["decisions"][c], theirs["decisions"][c]
            print(
                f"  {c:<6} flywheel {a['test']:<26} {a['score']:.4f} {'D' if a['drifted'] else '-'}   "
                f"evidently {b['test']:<32} {b['score']:.4f} {'D' if b['drifted'] else '-'}"
            )


if __name__ == "__main__":
    main()
