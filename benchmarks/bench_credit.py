"""Credit score (seed 003): CatBoost grid search on 100,000 monthly records, and the size of the leak a
random row split hides, on the same generated data in the same run.

1. ``--records`` monthly records (default 100,000) generated, through features and the time-split
   training set (Flywheel's data path, timed).
2. Grid search of CatBoost over the 8 combinations of ``configs/credit.yaml`` (each trial a nested
   MLflow run: Flywheel's ``tune``) against the peer, plain CatBoost fitted for each combination on
   the same train/validation rows, without MLflow. Goal: Flywheel ≤ 180 s on 2 cores.
3. The best parameters refitted and scored on the time split (test = the latest days, every feature
   as of its record's time) beside a random row split of the same rows (70/15/15 at random, so a
   customer's later months train a model tested on earlier ones): accuracy, macro-F1, log loss. Public
   notebooks on the Kaggle data report 0.73–0.75 accuracy and macro-F1 ≈ 0.71 with a random split.

Usage: python benchmarks/bench_credit.py [--records 100000] [--months 12]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.config import load_config
from flywheel.data import ops
from flywheel.features import dataset
from flywheel.features import ops as feature_ops
from flywheel.training import evaluation, tracking, train
from flywheel.training.models import make_model
from flywheel.workdir import Workdir

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "credit.yaml"


def peer_grid_search(config, data: train.Dataset) -> float:
    """Plain CatBoost over the same grid on the same train/valid rows (early stopping on valid), no
    MLflow and no Flywheel wrapper. (CatBoost's own ``grid_search`` cross-validates once more after
    the search when early stopping is on, which is not the same work.)"""
    from catboost import CatBoostClassifier, Pool

    categorical = data.metadata["categorical_features"]
    X, y = data.xy("train")
    Xv, yv = data.xy("valid")
    prepared = make_model("catboost", data.features, categorical, n_classes=3)
    prepared._learn_levels(X)
    train_pool = Pool(prepared._strings(prepared._frame(X)), y, cat_features=categorical)
    valid_pool = Pool(prepared._strings(prepared._frame(Xv)), yv, cat_features=categorical)
    grid = config.training.tuning.grid
    started = time.perf_counter()
    for values in itertools.product(*grid.values()):
        model = CatBoostClassifier(
            **{**prepared.params, **dict(zip(grid, values, strict=True))},
            loss_function="MultiClass",
            auto_class_weights="Balanced",
            thread_count=2,
            random_seed=config.training.seed,
            verbose=False,
            allow_writing_files=False,
        )
        model.fit(train_pool, eval_set=valid_pool, use_best_model=True)
    return time.perf_counter() - started


def fit_and_score(config, params: dict, train_rows, valid_rows, test_rows, data) -> dict[str, float]:
    model = train.new_model(config, "catboost", data, params)
    model.fit(
        train_rows[data.features], train_rows[data.label], valid_rows[data.features], valid_rows[data.label]
    )
    p = model.predict_proba(test_rows[data.features])
    return evaluation.compute_metrics(test_rows[data.label].to_numpy(), p, 0.5, config.spec.classes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    customers = -(-args.records // args.months)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            CONFIG,
            {
                "workdir": str(Path(tmp) / "wd"),
                "data.generator.customers": customers,
                "data.generator.end": f"{2024 + args.months // 12}-{args.months % 12 + 1:02d}-01",
            },
        )
        workdir = Workdir.at(config.workdir)
        started = time.perf_counter()
        generated = ops.generate(config, workdir)
        feature_ops.build(config, workdir)
        built = dataset.build(config, workdir)
        data_s = time.perf_counter() - started
        records = sum(generated.rows.values())
        splits = ", ".join(f"{name} {split['rows']:,}" for name, split in built.metadata["splits"].items())
        print(
            f"{records:,} monthly records of {customers:,} customers: generate + features + time-split "
            f"training set {data_s:.1f} s ({splits})"
        )
        data = train.load_dataset(workdir, built.path)
        combos = len(list(itertools.product(*config.training.tuning.grid.values())))
        tracking.setup(config, workdir)
        import mlflow

        with mlflow.start_run(run_name="bench-grid"):
            best, _, flywheel_s = train.tune(config, data)
        peer_s = peer_grid_search(config, data)
        print(
            f"grid search of CatBoost, {combos} combinations on {len(data.splits['train']):,} train rows: "
            f"flywheel {flywheel_s:.1f} s (each trial a nested MLflow run) | peer plain CatBoost loop "
            f"{peer_s:.1f} s | ratio {flywheel_s / peer_s:.2f} | goal ≤ 180 s"
        )
        print(f"best parameters by valid {config.training.tuning.metric}: {best}")
        time_split = fit_and_score(config, best, *(data.splits[s] for s in ("train", "valid", "test")), data)
        rows = pd.concat([data.splits[s] for s in ("train", "valid", "test")], ignore_index=True)
        order = np.random.default_rng(config.training.seed).permutation(len(rows))
        cut_train, cut_valid = int(0.7 * len(rows)), int(0.85 * len(rows))
        shuffled = rows.iloc[order].reset_index(drop=True)
        random_split = fit_and_score(
            config,
            best,
            shuffled.iloc[:cut_train],
            shuffled.iloc[cut_train:cut_valid],
            shuffled.iloc[cut_valid:],
            data,
        )
    print(f"{'split':36} {'accuracy':>8} {'macro-F1':>8} {'log loss':>8}")
    for name, figures in (
        ("time split (flywheel)", time_split),
        ("random row split (leaks customers)", random_split),
    ):
        print(f"{name:36} {figures['accuracy']:8.3f} {figures['macro_f1']:8.3f} {figures['log_loss']:8.3f}")
    print(f"{'public notebooks, Kaggle data, random':36} {'0.73–0.75':>8} {'≈ 0.71':>8} {'':>8}")
    print(
        f"leak of the random split: accuracy {random_split['accuracy'] - time_split['accuracy']:+.3f}, "
        f"macro-F1 {random_split['macro_f1'] - time_split['macro_f1']:+.3f}"
    )


if __name__ == "__main__":
    main()
