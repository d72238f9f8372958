"""``flywheel replay FILE``: a real file through the loop month by month (seed 002's chain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console


def replay_command(
    path: Annotated[
        Path, typer.Argument(help="A file in the use case's published layout, e.g. bank-full.csv.")
    ],
    warmup_months: Annotated[int, typer.Option(help="Months in the first batch (the first champion).")] = 12,
    months: Annotated[int | None, typer.Option(help="Replay at most this many later months.")] = None,
) -> None:
    """Ingest the warm-up months and train the first champion, then each later month: ingest it, score
    its rows through the service, take its outcomes as ground truth, and run one loop tick."""
    from flywheel.retraining import replay

    config = STATE.config()
    workdir = STATE.workdir_for(config, must_exist=False)
    table = Table(
        "month", "rows", "positive rate", "served", "ROC-AUC", "PR-AUC", "decision", "champion", "s"
    )

    def show(month: replay.ReplayMonth) -> None:
        console.print(
            f"  ✓ {month.month}: {month.rows:,} rows, ROC-AUC "
            f"{'n/a' if month.roc_auc is None else f'{month.roc_auc:.3f}'} (v{month.served_version}); "
            f"{month.decision}"
        )
        table.add_row(
            month.month,
            f"{month.rows:,}",
            f"{month.positive_rate:.3f}",
            f"v{month.served_version}",
            "n/a" if month.roc_auc is None else f"{month.roc_auc:.3f}",
            "n/a" if month.pr_auc is None else f"{month.pr_auc:.3f}",
            month.decision,
            f"v{month.champion_after}",
            f"{month.seconds:.0f}",
        )

    result = replay.replay(config, workdir, path, warmup_months, months, on_month=show)
    console.print(table)
    mean = result.mean_roc_auc
    console.print(f"warm-up {result.warmup}; mean monthly ROC-AUC {'n/a' if mean is None else f'{mean:.3f}'}")
    report = workdir.reports / "replay.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result.to_dict(), indent=2))
    console.print(f"report {report}")
