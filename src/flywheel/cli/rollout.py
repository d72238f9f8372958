"""``flywheel rollout``: put a challenger beside the champion (shadow, canary, A/B, bandit), then
promote or abort it. The state lives in the registry; running services pick it up through their
poller."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console
from flywheel.registry import registry
from flywheel.rollout import state

app = typer.Typer(
    help="Progressive delivery: shadow, canary, A/B or bandit, then promote or abort.", no_args_is_help=True
)


def _context():
    config = STATE.config()
    return config, STATE.workdir_for(config)


@app.command()
def start(
    mode: Annotated[str, typer.Option(help="shadow | canary | ab | bandit.")],
    version: Annotated[
        str | None,
        typer.Option(help="The version on trial (default: the challenger alias).", show_default=False),
    ] = None,
    percent: Annotated[
        float | None,
        typer.Option(
            help="Canary and A/B: the challenger's share of entities (default rollout.percent).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start a rollout of a challenger beside the champion."""
    config, workdir = _context()
    rollout = state.start(config, workdir, mode, version, percent)
    console.print(f"started {rollout.describe()}; services pick it up within serving.poll_seconds")


@app.command()
def status() -> None:
    """The running rollout, if any, and the recorded rollout decisions."""
    config, workdir = _context()
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    rollout = state.current(client, name)
    console.print(
        rollout.describe() + f", since {rollout.started_at}" if rollout else f"{name}: no rollout running"
    )
    table = Table("#", "at", "action", "rollout", "mode", "version", "reason", title="rollout decisions")
    for event in state.events(client, name)[-10:]:
        at = datetime.fromisoformat(event["at"])
        table.add_row(
            str(event["seq"]),
            f"{at:%Y-%m-%d %H:%M:%S}",
            event["action"],
            event["id"],
            event["mode"],
            f"v{event['challenger']}",
            event.get("reason") or "",
        )
    if table.row_count:
        console.print(table)


@app.command()
def shift(
    mode: Annotated[
        str | None, typer.Option(help="The new mode: shadow | canary | ab | bandit.", show_default=False)
    ] = None,
    percent: Annotated[
        float | None,
        typer.Option(help="Canary and A/B: the challenger's new share of entities.", show_default=False),
    ] = None,
) -> None:
    """Move the running rollout on: another mode (shadow → canary) or share (canary 10 → 50 %)."""
    config, workdir = _context()
    rollout = state.shift(config, workdir, mode, percent)
    console.print(f"shifted: {rollout.describe()}; services pick it up within serving.poll_seconds")


@app.command()
def promote() -> None:
    """Make the rollout's challenger the champion and end the rollout."""
    config, workdir = _context()
    rollout = state.promote(config, workdir)
    console.print(f"v{rollout.challenger} is the champion (was v{rollout.champion}); {rollout.id} ended")


@app.command()
def abort(
    reason: Annotated[str, typer.Option(help="Why; recorded and alerted.")] = "aborted by hand",
) -> None:
    """End the rollout; the champion serves alone again."""
    config, workdir = _context()
    rollout = state.abort(config, workdir, reason)
    console.print(f"{rollout.id} aborted; v{rollout.champion} serves alone")
