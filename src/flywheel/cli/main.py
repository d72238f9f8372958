"""Entry point of the ``flywheel`` command: global options, sub-apps and error handling.

Exit codes: 0 ok, 1 a user error (one line, no traceback unless ``--verbose``), 2 usage.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from flywheel import __version__
from flywheel.cli import dashboard, data, features, model, monitor, pipeline, replay, rollout, serve
from flywheel.cli.context import STATE, console, err_console, parse_sets, setup_logging
from flywheel.errors import FlywheelError

app = typer.Typer(
    help="Flywheel: a local-first MLOps loop for tabular models (one plug-in per use case).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(model.model_app, name="model")
app.add_typer(model.experiments_app, name="experiments")
app.add_typer(rollout.app, name="rollout")
app.command("train")(model.train_command)
app.command("evaluate")(model.evaluate_command)
app.add_typer(pipeline.app, name="pipeline")
app.command("step")(pipeline.step_command)
app.command("serve")(serve.serve_command)
app.add_typer(serve.predict_app, name="predict")
app.add_typer(monitor.app, name="monitor")
app.command("dashboard")(dashboard.dashboard_command)
app.add_typer(monitor.simulate_app, name="simulate")
app.command("retrain")(monitor.retrain_command)
app.command("loop")(monitor.loop_command)
app.command("replay")(replay.replay_command)


def _version(value: bool) -> None:
    if value:
        console.print(f"flywheel {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="FLYWHEEL_CONFIG",
            help="Use-case YAML (default configs/<default use case>.yaml).",
        ),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", envvar="FLYWHEEL_WORKDIR", help="State folder (default ./.flywheel)."),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: KEY=VALUE, repeatable.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress; show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    STATE.config_path = config
    STATE.workdir = workdir
    STATE.verbose = verbose
    setup_logging(verbose)
    STATE.overrides = parse_sets(set_ or [])


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (file, environment and --set overrides applied)."""
    import yaml

    console.print(yaml.safe_dump(STATE.config().model_dump(mode="json"), sort_keys=False), highlight=False)


@app.command()
def demo() -> None:
    """Run the whole loop on generated data until it closes: drift, retrain, promotion, hot swap,
    rollback (about a minute)."""
    from flywheel.cli.demo import run_demo

    run_demo()


def main() -> None:
    try:
        app()
    except FlywheelError as error:
        if STATE.verbose:
            traceback.print_exc()
        err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
