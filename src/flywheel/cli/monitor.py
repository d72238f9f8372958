"""``flywheel monitor``: drift of current data against the champion's reference profile."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console
from flywheel.monitoring import monitor
from flywheel.monitoring.drift import psi_level

app = typer.Typer(help="Drift monitoring against the champion's training data.", no_args_is_help=True)


@app.command()
def drift(
    source: Annotated[
        str, typer.Option(help="snapshot (offline store) or log (served traffic).")
    ] = "snapshot",
    date: Annotated[str | None, typer.Option(help="Snapshot date YYYY-MM-DD (default: the newest).")] = None,
    window: Annotated[int, typer.Option(help="Days of the prediction log, with --source log.")] = 30,
) -> None:
    """Per-feature and prediction drift; exits 1 on dataset drift."""
    if source not in ("snapshot", "log"):
        raise typer.BadParameter(f"unknown source {source!r}; expected snapshot or log")
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    report, meta, path = monitor.drift(config, workdir, source, date, window)
    table = Table(
        "column",
        "test",
        "score",
        "threshold",
        "drifted",
        "PSI",
        title=(f"{meta['current']} vs champion v{meta['champion_version']} training data"),
    )
    rows = [*report.columns, *([report.prediction] if report.prediction else [])]
    for c in rows:
        psi = f"{c.psi:.3f} ({psi_level(c.psi)})" if c.psi is not None else ""
        table.add_row(
            c.column,
            c.test,
            f"{c.score:.4g}",
            f"{c.threshold:g}",
            "[red]yes[/red]" if c.drifted else "no",
            psi,
        )
    console.print(table)
    console.print(
        f"dataset drift: {'YES' if report.dataset_drift else 'no'} ({report.drifted_share:.0%} of "
        f"columns drifted, threshold {report.share_threshold:.0%}); report: {path}"
    )
    if report.dataset_drift:
        raise typer.Exit(1)
