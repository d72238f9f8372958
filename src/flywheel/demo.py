"""The one-command demo: the whole loop on generated data.

Idempotent: a second run finds its batches already in the lake, rebuilds nothing that is current,
and re-checks and summarizes (a retrain inside the cooldown is declined, with that reason).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.errors import FlywheelError
from flywheel.features import online
from flywheel.features import ops as feature_ops
from flywheel.lock import locks_workdir
from flywheel.monitoring import monitor, performance, traffic
from flywheel.pipeline.runner import run_pipeline
from flywheel.registry import registry
from flywheel.retraining import retrain
from flywheel.serving.local import call, local_service
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
DEMO_BATCH_ID = "demo-batch-1"
DEMO_DRIFT = "price_shock"
TRAFFIC_DAYS, TRAFFIC_PER_DATE = 84, 200
Step = Callable[[str, str], None]


@dataclass
class DemoSummary:
    steps: list[tuple[str, str]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    pipeline_run_id: str | None = None
    champion: str | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    after_retrain: list[dict[str, Any]] = field(default_factory=list)
    drift_report: Path | None = None
    performance_report: Path | None = None
    decision: retrain.Decision | None = None


@locks_workdir("demo")
def run(
    config: FlywheelConfig, workdir: Workdir, on_step: Callable[[str], None] | None = None
) -> DemoSummary:
    """generate → validate → features and labels → Feast apply, materialize, skew check → the
    pipeline (validate → features → data_load → train → eval → model_upload → promote) → serve →
    simulated traffic → delayed-label performance → a price-shock batch → incremental features and
    materialization → drift report → retrain decision (and retrain, gate, promotion) → the service on
    the new champion → performance again → summary."""
    summary = DemoSummary()

    def step(name: str, detail: str) -> None:
        summary.steps.append((name, detail))
        if on_step:
            on_step(f"{name}: {detail}")

    def pipeline_event(name: str, status: str) -> None:
        if on_step and status != "RUNNING":
            on_step(f"  pipeline step {name}: {status}")

    generated = ops.generate(config, workdir)
    step(
        "generate",
        f"{generated.batch_id} {_rows(generated)}" + ("" if generated.created else " (already there)"),
    )
    report = ops.validate(workdir)
    step("validate", report.summary())
    _features(config, workdir, step)
    step("feast apply", ", ".join(online.apply(config, workdir)))
    _materialize(config, workdir, step, incremental=False)
    skew = online.check_skew(config, workdir)
    step("skew check", f"{skew.checked} customers, {len(skew.mismatches)} mismatches")

    record = run_pipeline(config, workdir, on_event=pipeline_event)
    summary.pipeline_run_id = record.run_id
    outputs = {s.name: s.outputs for s in record.steps}
    if record.status != "SUCCEEDED":
        failed = next((s for s in record.steps if s.status == "FAILED"), None)
        raise FlywheelError(
            f"pipeline run {record.run_id} {record.status}: {failed.error if failed else record.error}"
        )
    train_out, upload, promoted = outputs["train"], outputs["model_upload"], outputs["promote"]
    step(
        "pipeline",
        f"run {record.run_id} SUCCEEDED; {config.training.model_type} test ROC-AUC "
        f"{float(train_out['test_roc_auc']):.4f} vs baseline {config.training.baseline} "
        f"{float(train_out['baseline_test_roc_auc']):.4f}; v{upload['version']} gate "
        f"{'passed' if upload['gate_passed'] == 'true' else 'failed'}; {promoted.get('reason', '')}",
    )
    summary.champion = registry.champion_version(config, workdir)

    # the service polls the champion alias every second, so a promotion below reaches it quickly
    with local_service(apply_overrides(config, {"serving.poll_seconds": 1.0}), workdir) as url:
        summary.predictions = _predict(url, workdir)
        step("serve", f"service on {url}; {len(summary.predictions)} predictions answered")
        sent = traffic.simulate(config, workdir, url, days=TRAFFIC_DAYS, per_date=TRAFFIC_PER_DATE)
        step(
            "traffic",
            f"{sent.requests:,} predictions over {len(sent.dates)} simulated days "
            f"({sent.dates[0]} … {sent.dates[-1]}) through /v1/score",
        )
        _performance(config, workdir, step, summary)

        simulated = ops.simulate(config, workdir, drift=DEMO_DRIFT, batch_id=DEMO_BATCH_ID)
        drift = simulated.record["generator"]["drift"]
        again = "" if simulated.created else " (already there)"
        step("new batch", f"{simulated.batch_id} drift={drift} {_rows(simulated)}{again}")
        _features(config, workdir, step)
        _materialize(config, workdir, step, incremental=True)

        drift_report, meta, path = monitor.drift(config, workdir)
        summary.drift_report = path.with_suffix(".html")
        drifted = [c.column for c in drift_report.columns if c.drifted]
        prediction = drift_report.prediction
        step(
            "drift",
            f"{meta['current']} vs champion v{meta['champion_version']}: {len(drifted)} of "
            f"{len(drift_report.columns)} columns drifted ({', '.join(drifted) or 'none'}); dataset drift "
            f"{'YES' if drift_report.dataset_drift else 'no'}; prediction "
            f"{prediction.test} {prediction.score:.3f}{' drifted' if prediction.drifted else ''}",
        )

        decision = retrain.retrain(config, workdir, on_event=pipeline_event)
        summary.decision = decision
        fired = [t.name for t in decision.triggers if t.fired]
        step(
            "retrain decision",
            f"triggers fired: {', '.join(fired) or 'none'}; {decision.outcome}: {'; '.join(decision.reasons)}"
            + (f"; {decision.promotion_reason}" if decision.promotion_reason else ""),
        )
        if decision.error:
            raise FlywheelError(f"the retrain failed: {decision.error}")
        summary.champion = decision.champion_after
        summary.after_retrain = _predict(url, workdir, wait_for=summary.champion)
        step(
            "service",
            f"answering with v{summary.after_retrain[0]['model_version']} (champion v{summary.champion})",
        )
    _performance(config, workdir, step, summary)
    summary.batches = ops.status(workdir)
    return summary


def _predict(
    url: str, workdir: Workdir, customers: int = 5, wait_for: str | None = None
) -> list[dict[str, Any]]:
    """A few predictions; with ``wait_for``, first wait (≤ 30 s) until the service serves that version."""
    from flywheel.features.snapshots import snapshot_files

    deadline = time.monotonic() + 30
    while wait_for and call(f"{url}/v1/model")["version"] != wait_for:
        if time.monotonic() > deadline:
            raise FlywheelError(f"the service did not swap to v{wait_for} within 30 s")
        time.sleep(0.2)
    ids = pq.read_table(snapshot_files(workdir)[-1]).column("customer_id").to_pylist()[:customers]
    return [call(f"{url}/v1/predict", {"customer_id": customer}) for customer in ids]


def _performance(config: FlywheelConfig, workdir: Workdir, step: Step, summary: DemoSummary) -> None:
    report = performance.evaluate(config, workdir)
    summary.performance_report = performance.write(report, workdir)
    observed = [p for p in report.periods if p.status == "observed" and p.roc_auc is not None]
    pending = sum(p.status == "pending" for p in report.periods)
    auc = sum(p.roc_auc for p in observed) / len(observed) if observed else None
    step(
        "performance",
        f"labels observed through {report.observed_until[:10]}: {len(observed)} weekly periods labelled"
        + (f" (mean ROC-AUC {auc:.3f})" if auc is not None else "")
        + f", {pending} pending",
    )


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
