"""``flywheel demo``: runs :func:`flywheel.demo.run` and prints what each step did."""

from __future__ import annotations

import time

from rich.table import Table

from flywheel import demo
from flywheel.cli.context import STATE, console, progress
from flywheel.cli.data import batches_table


def run_demo() -> None:
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    started = time.perf_counter()
    console.print(f"Flywheel demo in {workdir.root}")
    with progress("demo") as stage:
        summary = demo.run(config, workdir, on_step=lambda line: (console.print(f"  ✓ {line}"), stage(line)))
    console.print(batches_table(summary.batches, title="lake"))
    answers = Table(
        "customer_id", "churn_probability", "risk_band", "model_version", title="POST /v1/predict"
    )
    for answer in summary.predictions:
        answers.add_row(
            str(answer["customer_id"]),
            f"{answer['churn_probability']:.3f}",
            answer["risk_band"],
            answer["model_version"],
        )
    console.print(answers)
    name = config.registry.model_name
    console.print(f"champion: {name} v{summary.champion}   pipeline run: {summary.pipeline_run_id}")
    console.print(
        f"workdir {workdir.root}: lake/, features/, datasets/, feature_repo/, mlflow.db, mlartifacts/"
    )
    console.print(
        "next: flywheel serve  →  curl -X POST localhost:8000/v1/predict -H 'content-type: application/json' "
        f"-d '{{\"customer_id\": {summary.predictions[0]['customer_id'] if summary.predictions else 1}}}' | "
        "flywheel pipeline monitor --latest | flywheel model list | "
        f"mlflow ui --backend-store-uri sqlite:///{workdir.mlflow_db} | "
        f"(cd {workdir.feature_repo} && feast ui)"
    )
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
