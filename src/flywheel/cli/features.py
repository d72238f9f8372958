"""``flywheel features``: snapshots and labels, the training set, and the Feast repo and online store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console, err_console, progress
from flywheel.features import dataset, online, ops
from flywheel.features.labels import class_mix

app = typer.Typer(
    help="Features and labels, training sets, and the Feast online store.", no_args_is_help=True
)


def _context():
    config = STATE.config()
    return config, STATE.workdir_for(config)


@app.command()
def build(
    full: Annotated[bool, typer.Option("--full", help="Recompute every snapshot date.")] = False,
) -> None:
    """Compute feature snapshots (only new dates unless --full) and labels from the lake."""
    config, workdir = _context()
    with progress("features build") as stage:
        snapshots, labels = ops.build(config, workdir, full=full, progress=stage)
    what = "all" if snapshots.full else "new"
    console.print(
        f"snapshots: {len(snapshots.dates_built)} {what} date(s) of {snapshots.dates_total}, "
        f"{snapshots.rows_written:,} rows"
    )
    console.print(f"labels: {labels.rows:,} rows over {labels.dates} dates, {labels.mix()}")


@app.command("list")
def list_features() -> None:
    """List the features the snapshots hold and which ones the model uses."""
    config, workdir = _context()
    used = set(dataset.resolve_features(config, workdir))
    table = Table("feature", "type", "used by the model")
    for name, type_ in dataset.available_features(config, workdir).items():
        table.add_row(name, str(type_), "yes" if name in used else "")
    console.print(table)


@app.command("dataset")
def build_dataset(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Rebuild the training set of the lake as it was after this batch (a batch id, or an "
            "Iceberg snapshot id from `flywheel data status`).",
        ),
    ] = None,
) -> None:
    """Join labels to snapshots point-in-time and write the time-split training set."""
    config, workdir = _context()
    with progress("dataset"):
        if as_of is None:
            result = dataset.build(config, workdir)
        else:
            from flywheel.features import asof

            result = asof.rebuild(config, workdir, as_of)
    table = Table("split", "rows", "label mix", "label dates", "from", "to", title=result.dataset_id)
    for name, split in result.metadata["splits"].items():
        table.add_row(
            name,
            f"{split['rows']:,}",
            class_mix(split.get("positive_rate", 0.0), split.get("class_shares")),
            str(split["label_dates"]),
            split["time_range"][0][:10],
            split["time_range"][1][:10],
        )
    console.print(table)
    console.print(f"{result.path} ({result.metadata['rows_purged']:,} rows purged at the split gaps)")


@app.command()
def apply() -> None:
    """Write the Feast repo (feature_store.yaml, features.py) and register it."""
    config, workdir = _context()
    with progress("feast apply"):
        applied = online.apply(config, workdir)
    console.print(f"applied {', '.join(applied)} in {workdir.feature_repo}")


@app.command()
def materialize(
    incremental: Annotated[
        bool, typer.Option("--incremental", help="Only snapshots newer than last time.")
    ] = False,
) -> None:
    """Write each entity's latest snapshot to the online store (never replacing a newer value)."""
    config, workdir = _context()
    with progress("materialize") as stage:
        result = online.materialize(config, workdir, incremental=incremental, progress=stage)
    console.print(
        f"materialized {result.written:,} of {result.candidates:,} entities "
        f"({result.skipped_older:,} older than the online store skipped), through {result.through}"
    )


@app.command()
def get(ids: Annotated[list[str], typer.Argument(help="One or more entity ids.")]) -> None:
    """Print the online feature values of entities, as JSON."""
    config, workdir = _context()
    keys = ids
    if config.spec.snapshot.entity.dtype == "int64":
        bad = [i for i in ids if not i.lstrip("-").isdigit()]
        if bad:
            raise typer.BadParameter(
                f"{bad[0]!r} is not a {config.spec.snapshot.entity.join_key}: expected an integer"
            )
        keys = [int(i) for i in ids]
    console.print_json(json.dumps(online.get(config, workdir, keys), default=str))


@app.command("check-skew")
def check_skew(sample: Annotated[int, typer.Option(help="Entities to compare.")] = 200) -> None:
    """Compare online values with the latest offline snapshot for a sample; exits 1 on any mismatch."""
    config, workdir = _context()
    report = online.check_skew(config, workdir, sample=sample)
    if report.ok:
        console.print(
            f"[green]ok[/green] {report.checked} entities: online equals the latest offline snapshot"
        )
        return
    key = config.spec.snapshot.entity.join_key
    table = Table(key, "feature", "offline", "online", title="training-serving skew")
    for row in report.mismatches[:50]:
        table.add_row(str(row[key]), row["feature"], str(row["offline"]), str(row["online"]))
    err_console.print(table)
    err_console.print(
        f"{len(report.mismatches)} mismatches, {len(report.missing_online)} entities missing online"
    )
    raise typer.Exit(1)
