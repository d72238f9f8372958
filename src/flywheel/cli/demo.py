"""``flywheel demo``: runs :func:`flywheel.demo.run` and prints what each step did."""

from __future__ import annotations

import time

from rich.table import Table

from flywheel import demo
from flywheel.cli.context import STATE, console, progress
from flywheel.cli.data import batches_table
from flywheel.cli.monitor import show_decision


def run_demo() -> None:
    config = STATE.config()
    workdir = STATE.workdir_for(config, must_exist=False)
    started = time.perf_counter()
    console.print(f"Flywheel demo in {workdir.root}")
    with progress("demo") as stage:
        summary = demo.run(config, workdir, on_step=lambda line: (console.print(f"  ✓ {line}"), stage(line)))
    console.print(batches_table(summary.batches, title="lake"))
    for title, rows in (
        ("POST /v1/predict (first champion)", summary.predictions),
        ("POST /v1/predict (after the retrain decision)", summary.after_retrain),
    ):
        answers = Table("customer_id", "churn_probability", "risk_band", "model_version", title=title)
        for answer in rows:
            answers.add_row(
                str(answer["customer_id"]),
                f"{answer['churn_probability']:.3f}",
                answer["risk_band"],
                answer["model_version"],
            )
        console.print(answers)
    name = config.registry.model_name
    console.print(f"champion: {name} v{summary.champion}   first pipeline run: {summary.pipeline_run_id}")
    if summary.decision is not None:
        show_decision(summary.decision)
    console.print(
        f"reports: drift {summary.drift_report} (and .json); performance {summary.performance_report}; "
        f"alerts {workdir.reports / 'alerts.jsonl'}"
    )
    console.print(
        f"workdir {workdir.root}: lake/, features/, datasets/, feature_repo/, predictions/, reports/, "
        "mlflow.db, mlartifacts/"
    )
    console.print(
        "next: flywheel serve  →  curl -X POST localhost:8000/v1/predict -H 'content-type: application/json' "
        f"-d '{{\"customer_id\": {summary.predictions[0]['customer_id'] if summary.predictions else 1}}}' | "
        "flywheel monitor drift | flywheel monitor performance | flywheel retrain --check-only | "
        "flywheel loop --once --simulate | flywheel model rollback | "
        f"mlflow ui --backend-store-uri sqlite:///{workdir.mlflow_db}"
    )
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
