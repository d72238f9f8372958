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
from flywheel.errors import FlywheelError
from flywheel.features import online
from flywheel.features import ops as feature_ops
from flywheel.pipeline.runner import run_pipeline
from flywheel.registry import registry
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
DEMO_BATCH_ID = "demo-batch-1"
Step = Callable[[str, str], None]


@dataclass
class DemoSummary:
    steps: list[tuple[str, str]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    pipeline_run_id: str | None = None
    champion: str | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)


def run(
    config: FlywheelConfig, workdir: Workdir, on_step: Callable[[str], None] | None = None
) -> DemoSummary:
    """generate → validate → features and labels → Feast apply, materialize, skew check → the
    pipeline (validate → features → data_load → train → eval → model_upload → promote) → a new batch →
    incremental features and materialization → summary."""
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
    step("feast apply", ", ".join(online.apply(config, workdir)))
    _materialize(config, workdir, step, incremental=False)
    skew = online.check_skew(config, workdir)
    step("skew check", f"{skew.checked} customers, {len(skew.mismatches)} mismatches")

    record = run_pipeline(
        config,
        workdir,
        on_event=lambda name, status: (
            on_step and status != "RUNNING" and on_step(f"  pipeline step {name}: {status}")
        ),
    )
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

    simulated = ops.simulate(config, workdir, batch_id=DEMO_BATCH_ID)
    drift = simulated.record["generator"]["drift"]
    again = "" if simulated.created else " (already there)"
    step("new batch", f"{simulated.batch_id} drift={drift} {_rows(simulated)}{again}")
    _features(config, workdir, step)
    _materialize(config, workdir, step, incremental=True)
    summary.predictions = _serve_briefly(config, workdir)
    step("serve", f"started the service, {len(summary.predictions)} predictions answered, stopped")
    summary.batches = ops.status(workdir)
    return summary


def _serve_briefly(config: FlywheelConfig, workdir: Workdir, customers: int = 5) -> list[dict[str, Any]]:
    """Start uvicorn with the service on a free loopback port, ask for a few predictions, stop it."""
    import json
    import socket
    import threading
    import time
    import urllib.request

    import pyarrow.parquet as pq
    import uvicorn

    from flywheel.features.snapshots import snapshot_files
    from flywheel.serving.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, workdir), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise FlywheelError("the prediction service did not start")
            time.sleep(0.1)
        ids = pq.read_table(snapshot_files(workdir)[-1]).column("customer_id").to_pylist()[:customers]
        answers = []
        for customer in ids:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/predict",
                data=json.dumps({"customer_id": customer}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(json.loads(response.read()))
        return answers
    finally:
        server.should_exit = True
        thread.join(timeout=30)


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
