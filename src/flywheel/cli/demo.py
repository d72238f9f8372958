"""``flywheel demo``: runs :func:`flywheel.demo.run` and prints what each step did."""

from __future__ import annotations

import time

from rich.table import Table

from flywheel import demo
from flywheel.cli.context import STATE, console, progress


def run_demo() -> None:
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    started = time.perf_counter()
    console.print(f"Flywheel demo in {workdir.root}")
    with progress("demo") as stage:
        summary = demo.run(config, workdir, on_step=lambda line: (console.print(f"  ✓ {line}"), stage(line)))
    table = Table("batch", "kind", "period", "drift", "users", "orders", "order_items", title="lake")
    for row in summary.batches:
        counts = row["rows"]
        table.add_row(
            row["batch_id"],
            row["kind"],
            f"{row['period_start'][:10]} → {row['period_end'][:10]}",
            row["drift"] or "",
            *(f"{counts.get(n, 0):,}" for n in ("users", "orders", "order_items")),
        )
    console.print(table)
    name = config.registry.model_name
    console.print(f"champion: {name} v{summary.champion}   pipeline run: {summary.pipeline_run_id}")
    console.print(
        f"workdir {workdir.root}: lake/, features/, datasets/, feature_repo/, mlflow.db, mlartifacts/"
    )
    console.print(
        "next: flywheel pipeline monitor --latest | flywheel model list | "
        f"mlflow ui --backend-store-uri sqlite:///{workdir.mlflow_db} | "
        f"(cd {workdir.feature_repo} && feast ui)"
    )
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
