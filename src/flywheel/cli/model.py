"""``flywheel train | evaluate | experiments | model``: training runs and the model registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console, progress
from flywheel.config import FlywheelConfig
from flywheel.lock import workdir_lock
from flywheel.registry import registry
from flywheel.training import train as training
from flywheel.workdir import Workdir

model_app = typer.Typer(
    help="The model registry: versions, gates, aliases, promotion, rollback.", no_args_is_help=True
)
experiments_app = typer.Typer(help="Experiment tracking (MLflow).", no_args_is_help=True)


def _context(**overrides):
    config = STATE.config(**overrides)
    return config, STATE.workdir_for(config)


def train_command(
    model_type: Annotated[
        str | None,
        typer.Option(
            help="logistic_regression | random_forest | lightgbm | xgboost | catboost.", show_default=False
        ),
    ] = None,
    tuning: Annotated[str | None, typer.Option(help="none | grid | optuna.", show_default=False)] = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials.", show_default=False)] = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Apply the promotion policy afterwards.")
    ] = False,
) -> None:
    """Tune, train and evaluate a candidate on the latest dataset, log it to MLflow and register it."""
    config, workdir = _context(
        **{
            "training.model_type": model_type,
            "training.tuning.method": tuning,
            "training.tuning.trials": trials,
        }
    )
    with workdir_lock(workdir, "train"):  # train, register and promote as one writer
        _train_register_promote(config, workdir, promote)


def _train_register_promote(config: FlywheelConfig, workdir: Workdir, promote: bool) -> None:
    with progress("train"):
        result = training.train(config, workdir)
    with progress("register"):
        registration = registry.register(
            config,
            workdir,
            result.run_id,
            result.model_uri,
            result.test_metrics,
            result.dataset_path / "test.parquet",
        )
    table = Table(
        "metric", "valid", "test", f"baseline ({config.training.baseline})", title=f"run {result.run_id}"
    )
    shown = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "macro_f1", "weighted_f1")
    shown += ("log_loss", "brier", "top_decile_lift")
    per_class = [name for name in result.test_metrics if name.startswith("f1_")]  # multiclass
    for name in [*(n for n in shown if n in result.test_metrics), *per_class]:
        table.add_row(
            name,
            f"{result.valid_metrics[name]:.4f}",
            f"{result.test_metrics[name]:.4f}",
            f"{result.baseline_test_metrics[name]:.4f}",
        )
    console.print(table)
    decision = "the most probable class" if config.spec.classes else f"threshold {result.threshold:.3f}"
    console.print(
        f"{result.model_type} {decision}; "
        f"tuning {len(result.trials)} trial(s) in {result.tuning_seconds:.1f}s"
    )
    gate = "passed" if registration.gate_passed else "FAILED"
    console.print(
        f"registered {config.registry.model_name} v{registration.version}: gate {gate} "
        + ", ".join(f"{c.name}={c.value:.4g}" for c in registration.checks)
    )
    if promote and registration.gate_passed:
        _show_decision(registry.promote(config, workdir, registration.version, run_id=result.run_id))


def evaluate_command(
    model_uri: Annotated[str | None, typer.Option(help="Model URI (default: the champion).")] = None,
) -> None:
    """Evaluate a model on the latest dataset's test split."""
    config, workdir = _context()
    uri = model_uri or f"models:/{config.registry.model_name}@{registry.CHAMPION}"
    metrics = training.evaluate_model(config, workdir, uri)
    console.print_json(json.dumps({"model_uri": uri, **metrics}))


@experiments_app.command("list")
def experiments_list(
    metric: Annotated[str, typer.Option(help="Sort by this metric.")] = "test_roc_auc",
    limit: Annotated[int, typer.Option(help="Runs to show.")] = 10,
) -> None:
    """Training runs, best first."""
    config, workdir = _context()
    table = Table("run", "started", "model", metric, "baseline", "dataset")
    for row in training.best_runs(config, workdir, metric, limit):
        value, base = row[metric], row["baseline"]
        table.add_row(
            row["run_id"][:12],
            f"{row['start']:%Y-%m-%d %H:%M}",
            row["model_type"] or "",
            f"{value:.4f}" if value is not None else "",
            f"{base:.4f}" if base is not None else "",
            row["dataset_id"] or "",
        )
    console.print(table)


@model_app.command("list")
def model_list() -> None:
    """Registered versions with their aliases and gate results."""
    config, workdir = _context()
    table = Table("version", "aliases", "gate", "model", "test roc_auc", "created")
    for row in registry.list_versions(config, workdir):
        table.add_row(
            row["version"],
            ", ".join(row["aliases"]),
            row["gate_passed"] or "",
            row["model_type"] or "",
            row["roc_auc"] or "",
            f"{row['created']:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@model_app.command()
def describe(version: Annotated[str, typer.Argument(help="Model version.")]) -> None:
    """A version's tags, gate checks and the alias moves that involved it."""
    config, workdir = _context()
    console.print_json(json.dumps(registry.describe(config, workdir, version), default=str))


def _show_decision(decision: registry.PromotionDecision) -> None:
    verb = "promoted" if decision.promoted else "not promoted"
    console.print(f"v{decision.version} {verb} to champion: {decision.reason}")


@model_app.command()
def promote(
    version: Annotated[str | None, typer.Argument(help="Version (default: the challenger).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the comparison with the champion (not the gate).")
    ] = False,
) -> None:
    """Apply the promotion policy: gate passed and better than the champion, or no champion yet."""
    config, workdir = _context()
    decision = registry.promote(config, workdir, version, force=force)
    _show_decision(decision)
    if not decision.promoted:
        raise typer.Exit(1)


@model_app.command()
def rollback(reason: Annotated[str, typer.Option(help="Why; recorded with the move.")] = "rollback") -> None:
    """Move the champion back to the previous champion."""
    config, workdir = _context()
    current, previous = registry.rollback(config, workdir, reason)
    console.print(f"champion rolled back from v{current} to v{previous}")
