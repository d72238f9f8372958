"""``flywheel dashboard --out DIR``: the service's ``/dashboard`` page as static files to share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel.cli.context import STATE, console


def dashboard_command(
    out: Annotated[Path, typer.Option(help="Folder to write index.html and plotly.min.js into.")],
) -> None:
    """Write the monitoring dashboard as a static page (opens from disk, works offline): the same
    page `flywheel serve` serves at /dashboard."""
    from flywheel.dashboard import page
    from flywheel.registry import registry

    config = STATE.config()
    workdir = STATE.workdir_for(config)
    # no tracking store yet (nothing trained): the page says so, and none is created for it
    has_registry = config.tracking.uri is not None or workdir.mlflow_db.exists()
    client = None
    if has_registry:
        from mlflow.exceptions import MlflowException

        try:
            client = registry.mlflow_client(config, workdir)
        except MlflowException as error:  # the page still shows everything the workdir holds
            console.print(
                f"[yellow]the registry could not be read ({error}): no versions on the page[/yellow]"
            )
    written = page.export(config, workdir, client, out)
    console.print(f"dashboard of {config.use_case} written to {written} (open it in a browser)")
