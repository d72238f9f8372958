"""The one-command demo: the whole loop, as far as it is built, on generated data.

Idempotent: a second run finds its batches already in the lake, rebuilds nothing that is current,
and re-checks and summarizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.features import dataset, online
from flywheel.features import ops as feature_ops
from flywheel.registry import registry
from flywheel.training import train
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
DEMO_BATCH_ID = "demo-batch-1"
Step = Callable[[str, str], None]


@dataclass
class DemoSummary:
    steps: list[tuple[str, str]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)


def run(
    config: FlywheelConfig, workdir: Workdir, on_step: Callable[[str], None] | None = None
) -> DemoSummary:
    """generate → validate → features, labels, training set → Feast apply, materialize, skew check →
    train (tuning, baseline) → register (gate) → promote → a new batch → incremental features and
    materialization → summary."""
    summary = DemoSummary()

    def step(name: str, detail: str) -> None:
        summary.steps.append((name, detail))
        if on_step:
            on_step(f"{name}: {detail}")

    generated = ops.generate(config, workdir)
    step(
        "generate",
        f"{generated.batch_id} {_rows(generated)}" + ("" if generated.created else " (already there)"),
    )
    report = ops.validate(workdir)
    step("validate", report.summary())
    _features(config, workdir, step)
    training = dataset.build(config, workdir)
    splits = ", ".join(f"{name}={s['rows']:,}" for name, s in training.metadata["splits"].items())
    step("dataset", f"{training.dataset_id} {splits}")
    step("feast apply", ", ".join(online.apply(config, workdir)))
    _materialize(config, workdir, step, incremental=False)
    skew = online.check_skew(config, workdir)
    step("skew check", f"{skew.checked} customers, {len(skew.mismatches)} mismatches")
    trained = train.train(config, workdir)
    step(
        "train",
        f"{trained.model_type} test ROC-AUC {trained.test_metrics['roc_auc']:.4f} vs baseline "
        f"{config.training.baseline} {trained.baseline_test_metrics['roc_auc']:.4f} "
        f"({len(trained.trials)} tuning trials, {trained.tuning_seconds:.1f}s)",
    )
    registration = registry.register(config, workdir, trained.run_id, trained.model_uri)
    gate = "passed" if registration.gate_passed else "failed"
    step("register", f"{config.registry.model_name} v{registration.version}, gate {gate}")
    if registration.gate_passed:
        decision = registry.promote(config, workdir, registration.version, run_id=trained.run_id)
        step(
            "promote",
            f"v{decision.version} {'is champion' if decision.promoted else 'not promoted'}: "
            f"{decision.reason}",
        )

    simulated = ops.simulate(config, workdir, batch_id=DEMO_BATCH_ID)
    drift = simulated.record["generator"]["drift"]
    again = "" if simulated.created else " (already there)"
    step("new batch", f"{simulated.batch_id} drift={drift} {_rows(simulated)}{again}")
    _features(config, workdir, step)
    _materialize(config, workdir, step, incremental=True)
    summary.batches = ops.status(workdir)
    return summary


def _features(config: FlywheelConfig, workdir: Workdir, step: Step) -> None:
    built, labels = feature_ops.build(config, workdir)
    step(
        "features",
        f"{len(built.dates_built)} of {built.dates_total} snapshot dates built, {built.rows_written:,} rows; "
        f"{labels.rows:,} labels, churn rate {labels.positive_rate:.1%}",
    )


def _materialize(config: FlywheelConfig, workdir: Workdir, step: Step, incremental: bool) -> None:
    result = online.materialize(config, workdir, incremental=incremental)
    name = "materialize --incremental" if incremental else "materialize"
    step(name, f"{result.written:,} customers to the online store, through {result.through}")


def _rows(result: ops.CommitResult) -> str:
    return ", ".join(
        f"{name}={rows:,}" for name, rows in result.rows.items() if name in {"users", "orders", "order_items"}
    )
