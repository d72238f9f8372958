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
from flywheel.rollout import arms, state
from flywheel.rollout.stats import thompson_shares

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
    if rollout is not None:
        _show_arms(config, workdir, rollout)
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


def _show_arms(config, workdir, rollout: state.Rollout) -> None:
    """Each arm's live figures from the prediction logs, the A/B verdict and the bandit's shares."""
    if not workdir.predictions.is_dir():
        console.print("no prediction log yet: no arm has answered")
        return
    figures = arms.ArmCounter(workdir.predictions, rollout).update()
    table = Table("arm", "version", "predictions", "outcomes", "successes", "rate", title="arms")
    for f in figures.values():
        if f.predictions or f.arm != "shadow":
            rate = "" if f.rate is None else f"{f.rate:.2%}"
            table.add_row(
                f.arm, f"v{f.version}", f"{f.predictions:,}", f"{f.outcomes:,}", f"{f.successes:,}", rate
            )
    console.print(table)
    result = arms.compare(figures, config.rollout)
    if result is not None:
        needed = (
            f"; {result.required_per_arm:,} predictions per arm detect a lift of "
            f"{config.rollout.min_effect:+.2%}"
            if result.required_per_arm is not None
            else ""
        )
        console.print(
            f"challenger vs champion: lift {result.lift:+.2%} "
            f"(CI {result.ci_low:+.2%}..{result.ci_high:+.2%}), z {result.z:.2f}, "
            f"p {result.p_value:.4f} → {result.recommendation}{needed}"
        )
    if rollout.mode == "bandit":
        shares = thompson_shares(arms.bandit_outcomes(figures), rollout.floor, seed=0)
        console.print("bandit shares: " + ", ".join(f"{arm} {share:.1%}" for arm, share in shares.items()))


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
