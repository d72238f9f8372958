"""``flywheel demo``: runs :func:`flywheel.demo.run` and prints what each stage did and how long it took."""

from __future__ import annotations

import json
import time

from rich.table import Table

from flywheel import demo
from flywheel.cli.context import STATE, console, progress
from flywheel.cli.data import batches_table
from flywheel.cli.monitor import show_decision
from flywheel.serving.schemas import PREDICTED_CLASS, Bodies, bodies


def _answers(names: Bodies, rows: list[dict], title: str) -> Table:
    """The service's answers as a table: the score (or each class's probability) and the version."""
    if names.classes:
        answers = Table(names.key, PREDICTED_CLASS, *names.classes, "model_version", title=title)
        for answer in rows:
            per_class = [f"{answer[names.score][name]:.3f}" for name in names.classes]
            answers.add_row(
                str(answer[names.key]), answer[PREDICTED_CLASS], *per_class, answer["model_version"]
            )
        return answers
    answers = Table(names.key, names.score, names.band or "", "model_version", title=title)
    for answer in rows:
        answers.add_row(
            str(answer[names.key]),
            f"{answer[names.score]:.3f}",
            answer.get(names.band or "", ""),
            answer["model_version"],
        )
    return answers


def run_demo() -> None:
    config = demo.demo_config(STATE.config())
    workdir = STATE.workdir_for(config, must_exist=False)
    names = bodies(config.spec)
    started = time.perf_counter()
    console.print(f"Flywheel demo in {workdir.root}")
    console.print("scenario: " + ", ".join(f"{k}={v}" for k, v in config.spec.demo.items()))
    with progress("demo") as stage:
        summary = demo.run(config, workdir, on_step=lambda line: (console.print(f"  ✓ {line}"), stage(line)))
    console.print(batches_table(summary.batches, config.spec.table_order, title="lake"))
    for title, rows in (
        ("POST /v1/predict (first champion)", summary.predictions),
        ("POST /v1/predict (after the promotion: hot swap)", summary.after_promotion),
        ("POST /v1/predict (after the rollback)", summary.after_rollback),
    ):
        if not rows:
            continue
        console.print(_answers(names, rows, title))
    if summary.tick is not None and summary.tick.decision is not None:
        show_decision(summary.tick.decision)
    stages = Table("stage", "seconds", title="stages")
    for name, _, seconds in summary.stages:
        if not name.startswith("  "):
            stages.add_row(name, f"{seconds:.1f}")
    stages.add_row("total", f"{summary.seconds:.1f}")
    console.print(stages)
    name = config.registry.model_name
    console.print(
        f"champion: {name} v{summary.champion} (first champion v{summary.first_champion}); "
        f"performance report {summary.performance_report}; alerts {workdir.reports / 'alerts.jsonl'}"
    )
    console.print(
        f"workdir {workdir.root}: lake/, features/, datasets/, feature_repo/, predictions/, reports/, "
        "mlflow.db, mlartifacts/"
    )
    first = summary.predictions[0][names.key] if summary.predictions else 1
    console.print(
        "next: flywheel serve  →  curl -X POST localhost:8000/v1/predict -H 'content-type: application/json' "
        f"-d '{json.dumps({names.key: first})}' | flywheel monitor drift | flywheel monitor performance | "
        "flywheel retrain --check-only | flywheel loop --once --simulate | flywheel model list | "
        f"mlflow ui --backend-store-uri sqlite:///{workdir.mlflow_db}"
    )
    console.print(f"demo finished in {time.perf_counter() - started:.1f}s")
