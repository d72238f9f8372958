"""Bank marketing: ingest + features + training set of a bank-full-sized file, and the month-by-month
replay against a naive monthly retrain, on the same generated file in the same run.

1. A generated bank-full layout file of about 45k rows (the published file has 45,211): Flywheel's
   ingest (UCI reader, validation, atomic commit) + feature build + training set, timed in-process,
   beside the peer pandas ``read_csv`` of the same file (reading only). Goal: ≤ 15 s.
2. The naive peer of the issue: LightGBM retrained every month on all earlier months (every published
   column but ``duration`` and ``y``), scored on the month; mean monthly ROC-AUC.
3. ``flywheel replay`` of the same months (bank-additional layout, with the macro indicators): the
   champion serves each month before its outcomes count, one loop tick per month. Goal: the replay
   beats the naive retrain by a clear margin, 30 months in ≤ 10 minutes.

Usage: python benchmarks/bench_bank.py [--warmup-months 13] [--skip-replay]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from flywheel.config import load_config
from flywheel.data import ops
from flywheel.features import dataset
from flywheel.features import ops as feature_ops
from flywheel.retraining import replay
from flywheel.usecases.bank.generator import GeneratorSettings, generate_batch
from flywheel.usecases.bank.uci import write_uci
from flywheel.workdir import Workdir

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bank.yaml"
SETTINGS = GeneratorSettings(
    clients=8000, contacts_per_month=1460, start=date(2008, 5, 1), end=date(2010, 12, 1)
)


def ingest_to_training_set(path: Path, root: Path) -> tuple[float, int]:
    config = load_config(CONFIG, {"workdir": str(root)})
    workdir = Workdir.at(root)
    started = time.perf_counter()
    ops.ingest(config.spec, workdir, [path])
    feature_ops.build(config, workdir)
    built = dataset.build(config, workdir)
    return time.perf_counter() - started, sum(s["rows"] for s in built.metadata["splits"].values())


def naive_monthly(path: Path, months: list[str]) -> dict[str, float]:
    """LightGBM retrained each month on every earlier month, without duration (the issue's peer)."""
    contacts = load_config(CONFIG).spec.read_file(path).tables["contacts"].to_pandas()
    contacts["month_key"] = contacts["contact_at"].dt.strftime("%Y-%m")
    features = [
        c
        for c in contacts.columns
        if c not in ("contact_id", "client_id", "contact_at", "duration", "y", "month_key")
    ]
    for column in contacts[features].select_dtypes("object"):
        contacts[column] = contacts[column].astype("category")
    scores = {}
    for month in months:
        train, test = contacts[contacts["month_key"] < month], contacts[contacts["month_key"] == month]
        model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.05, verbose=-1, n_jobs=2)
        model.fit(train[features], train["y"] == "yes")
        truth = test["y"] == "yes"
        if truth.nunique() == 2:
            scores[month] = roc_auc_score(truth, model.predict_proba(test[features])[:, 1])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup-months", type=int, default=13)
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    contacts = generate_batch(SETTINGS).tables["contacts"]
    with tempfile.TemporaryDirectory() as tmp:
        full, additional = Path(tmp) / "bank-full.csv", Path(tmp) / "bank-additional-full.csv"
        write_uci(contacts, full, "full")
        write_uci(contacts, additional, "additional")
        started = time.perf_counter()
        pd.read_csv(full, sep=";")
        peer_s = time.perf_counter() - started
        flywheel_s, rows = ingest_to_training_set(full, Path(tmp) / "ingest")
        print(
            f"generated file: {contacts.num_rows:,} rows ({full.stat().st_size / 1e6:.1f} MB, bank-full layout)"
        )
        print(
            f"ingest + features + training set: flywheel {flywheel_s:.1f} s ({rows:,} training rows) | "
            f"peer pandas.read_csv alone {peer_s:.2f} s | ratio {flywheel_s / peer_s:.0f}× | goal ≤ 15 s"
        )
        if args.skip_replay:
            return
        months = sorted(set(contacts.column("contact_at").to_pandas().dt.strftime("%Y-%m")))[
            args.warmup_months :
        ]
        naive = naive_monthly(additional, months)
        config = load_config(CONFIG, {"workdir": str(Path(tmp) / "replay"), "training.tuning.method": "none"})
        started = time.perf_counter()
        result = replay.replay(
            config, Workdir.at(config.workdir), additional, warmup_months=args.warmup_months
        )
        replay_s = time.perf_counter() - started
    print(f"{'month':8} {'rows':>6} {'positive':>8} {'replay AUC':>10} {'naive AUC':>9}  decision")
    for month in result.months:
        auc = "n/a" if month.roc_auc is None else f"{month.roc_auc:.3f}"
        print(
            f"{month.month:8} {month.rows:6,} {month.positive_rate:8.3f} {auc:>10} "
            f"{naive.get(month.month, float('nan')):9.3f}  {month.decision}"
        )
    mean_naive = float(np.mean([naive[m.month] for m in result.months if m.month in naive]))
    print(
        f"replay of {len(result.months) + args.warmup_months} months ({args.warmup_months} warm-up) in "
        f"{replay_s:.0f} s (goal ≤ 600 s): mean monthly ROC-AUC flywheel {result.mean_roc_auc:.3f} | "
        f"peer naive monthly LightGBM {mean_naive:.3f} | difference {result.mean_roc_auc - mean_naive:+.3f}"
    )


if __name__ == "__main__":
    main()
