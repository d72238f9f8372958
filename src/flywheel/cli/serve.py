"""``flywheel serve`` (the prediction service) and ``flywheel predict batch`` (offline scoring)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from flywheel.cli.context import STATE, console, progress

predict_app = typer.Typer(help="Offline scoring with the champion.", no_args_is_help=True)


def serve_command(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default serving.host).", show_default=False)
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default serving.port).", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.", show_default=False)] = None,
) -> None:
    """Serve predictions over HTTP (FastAPI on uvicorn) from the champion and the online store.

    An empty workdir is served too (a container started before the pipeline ran): /ready says what
    is missing until the online store and a champion exist."""
    import uvicorn

    from flywheel.serving.multiprocess import metrics_dir

    config = STATE.config(**{"serving.host": host, "serving.port": port, "serving.workers": workers})
    workdir = STATE.workdir_for(config)
    # worker processes rebuild the app from the environment (uvicorn imports the factory by name)
    os.environ["FLYWHEEL_WORKDIR"] = str(workdir.root)
    if STATE.config_path:
        os.environ["FLYWHEEL_CONFIG"] = str(STATE.config_path)
    for key, value in STATE.overrides.items():
        os.environ[f"FLYWHEEL_SET__{key}"] = str(value)
    console.print(f"serving on http://{config.serving.host}:{config.serving.port} (docs at /docs)")
    # uvicorn stops gracefully on SIGTERM (in-flight requests answered, the prediction log flushed),
    # then raises the signal again to end the process by it; a graceful stop exits 0 instead, as the
    # multi-worker supervisor does
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    with metrics_dir(config.serving.workers):  # before any worker imports prometheus_client
        uvicorn.run(
            "flywheel.serving.factory:app",
            factory=True,
            host=config.serving.host,
            port=config.serving.port,
            workers=config.serving.workers,
            log_level="warning",
        )


@predict_app.command("batch")
def predict_batch(
    out: Annotated[Path, typer.Option(help="Parquet file to write.")],
    rows: Annotated[
        Path | None,
        typer.Option(
            help="Parquet or CSV rows to score instead: the entity keys, as_of (the moment) and the "
            "request features; each is joined to the features as of its moment.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Score every entity's latest offline snapshot (or --rows) with the champion, in batches on the
    configured engine (features.engine)."""
    from flywheel.serving.batch import read_rows, score_latest, score_rows

    config = STATE.config()
    workdir = STATE.workdir_for(config)
    with progress("batch scoring"):
        if rows is None:
            result = score_latest(config, workdir, out)
        else:
            result = score_rows(config, workdir, read_rows(rows), out)
    what = "entities" if rows is None else "rows"
    console.print(f"scored {result.rows:,} {what} with v{result.version} in {result.seconds:.1f}s → {out}")
