"""``flywheel data``: generate, simulate, ingest, validate and list batches of the use case's tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console, err_console, progress
from flywheel.config import FlywheelConfig
from flywheel.data import ops
from flywheel.data.ingest import QuarantineRejected
from flywheel.data.lake import Lake
from flywheel.data.validation import BatchRejected, ValidationReport
from flywheel.lock import workdir_lock

app = typer.Typer(
    help="Raw data: generate, simulate new batches, ingest real exports, validate.", no_args_is_help=True
)
DateOption = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], show_default=False)]


def _show_commit(result: ops.CommitResult, verb: str) -> None:
    if not result.created:
        console.print(f"batch [bold]{result.batch_id}[/bold] is already in the lake; nothing to do")
        return
    period = result.record["period"]
    console.print(
        f"{verb} batch [bold]{result.batch_id}[/bold] ({period['start'][:10]} → {period['end'][:10]})"
    )
    table = Table("table", "rows", "time range")
    for name, info in result.record["tables"].items():
        span = info["time_range"]
        table.add_row(name, f"{info['rows']:,}", f"{span[0][:10]} → {span[1][:10]}" if span else "")
    console.print(table)


def show_report(report: ValidationReport) -> None:
    """Print a validation report as a table of failed checks (or one line when all passed)."""
    if report.ok:
        console.print(f"[green]ok[/green] {report.summary()}")
        return
    table = Table(
        "check", "table", "column", "failing rows", "example", title=f"validation of {report.batch_id}"
    )
    for failure in report.failures:
        example = str(failure.examples[0]) if failure.examples else failure.message
        table.add_row(
            failure.check, failure.table, failure.column or "", f"{failure.failing_rows:,}", example[:120]
        )
    err_console.print(table)


def show_quarantine(report: dict, path: Path, to_errors: bool = False) -> None:
    """Print a batch's quarantine report: per file, the rows each rule left out, with an example."""
    out = err_console if to_errors else console
    for source, info in report["files"].items():
        repaired = [
            f"{rule} {entry['values']:,}"
            for rule, entry in info.get("repairs", {}).items()
            if entry["values"]
        ]
        if repaired:
            out.print(f"{source}: values repaired by rule: {', '.join(repaired)}")
        if not info["rows_quarantined"]:
            out.print(f"{source}: no row quarantined of {info['rows_read']:,}")
            continue
        table = Table(
            "rule",
            "rows",
            "description",
            "example",
            title=f"quarantined in {source}: {info['rows_quarantined']:,} of {info['rows_read']:,} rows "
            f"({info['share']:.1%}, bound {report['max_quarantine_share']:.1%})",
        )
        for rule, entry in info["rules"].items():
            if entry["count"]:
                example = str(entry["examples"][0]) if entry["examples"] else ""
                table.add_row(rule, f"{entry['count']:,}", entry["description"], example[:100])
        out.print(table)
    out.print(f"quarantine report: {path}")


@contextmanager
def _committing(title: str) -> Iterator[ops.Progress]:
    """A progress display for a commit; a rejected batch's report is printed before the error."""
    try:
        with progress(title) as stage:
            yield stage
    except BatchRejected as rejected:
        show_report(rejected.report)
        raise


@app.command()
def generate(
    size: Annotated[
        int | None,
        typer.Option(help="Size of the synthetic world (the use case's size setting).", show_default=False),
    ] = None,
    start: DateOption = None,
    end: DateOption = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.", show_default=False)] = None,
) -> None:
    """Generate a synthetic history into an empty lake (defaults from data.generator; any other
    generator setting with --set data.generator.NAME=VALUE)."""
    config = STATE.config()
    overrides = {
        "data.generator.start": start.date().isoformat() if start else None,
        "data.generator.end": end.date().isoformat() if end else None,
        "data.generator.seed": seed,
    }
    if size is not None:
        if config.spec.size_setting is None:
            raise typer.BadParameter(f"the {config.spec.name} generator has no size setting; use --set")
        overrides[f"data.generator.{config.spec.size_setting}"] = size
    config = STATE.config(**overrides)
    workdir = STATE.workdir_for(config, must_exist=False)
    with _committing("generate") as stage:
        result = ops.generate(config, workdir, stage)
    _show_commit(result, "generated")


@app.command()
def simulate(
    days: Annotated[int | None, typer.Option(help="Length of the new period.", show_default=False)] = None,
    drift: Annotated[
        str | None,
        typer.Option(help="A drift scenario of the use case's generator (e.g. none).", show_default=False),
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option(help="Batch id; an id already in the lake is a no-op.")
    ] = None,
) -> None:
    """Append the next period of the synthetic world (defaults from data.simulate)."""
    config = STATE.config(**{"data.simulate.days": days, "data.simulate.drift": drift})
    workdir = STATE.workdir_for(config)
    with _committing("simulate") as stage:
        result = ops.simulate(config, workdir, batch_id=batch_id, progress=stage)
    _show_commit(result, "appended")


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="CSV or Parquet files, or folders of them, named by table.")
    ],
    batch_id: Annotated[str | None, typer.Option(help="Batch id (default: a hash of the files).")] = None,
    period_end: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
            help="End of the batch's period (UTC).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Validate and add real data of the use case's tables (CSV, Parquet, or its own published layout).
    Rows the use case's reader quarantined are reported and written to reports/quarantine/."""
    config = STATE.config()
    workdir = STATE.workdir_for(config, must_exist=False)
    end = period_end.replace(tzinfo=UTC) if period_end else None
    with _committing("ingest") as stage:
        try:
            result = ops.ingest(
                config.spec, workdir, paths, batch_id, end, stage, config.data.ingest, config.lake
            )
        except QuarantineRejected as rejected:
            if rejected.report is not None:
                show_quarantine(rejected.report, rejected.report_path, to_errors=True)
            raise
    _show_commit(result, "ingested")
    if result.quarantine is not None:
        show_quarantine(result.quarantine, result.quarantine_path)


@app.command()
def validate() -> None:
    """Re-check every table in the lake; exits 1 when a check fails."""
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    with progress("validate") as stage:
        report = ops.validate(config.spec, workdir, stage)
    show_report(report)
    if not report.ok:
        raise typer.Exit(1)


def batches_table(rows: list[dict], tables: tuple[str, ...], title: str | None = None) -> Table:
    """The committed batches as a table (``flywheel data status`` and the demo), with the row counts
    of ``tables``."""
    table = Table("batch", "kind", "period", "drift", *tables, title=title)
    for row in rows:
        counts = row["rows"]
        table.add_row(
            row["batch_id"],
            row["kind"],
            f"{row['period_start'][:10]} → {row['period_end'][:10]}",
            row["drift"] or "",
            *(f"{counts.get(n, 0):,}" for n in tables),
        )
    return table


@app.command()
def status() -> None:
    """List the committed batches."""
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    rows = ops.status(config.spec, workdir)
    if not rows:
        console.print(f"{workdir.lake} is empty")
        return
    console.print(batches_table(rows, config.spec.table_order))
    found = ops.snapshots(config.spec, workdir)
    if found:
        table = Table(
            "table", "snapshot id", "batch", "rows added", "rows", "current", title="Iceberg snapshots"
        )
        for s in found:
            table.add_row(
                s["table"],
                str(s["snapshot_id"]),
                s["batch_id"] or "",
                f"{s['added_rows']:,}",
                f"{s['rows']:,}",
                "✓" if s["current"] else "",
            )
        console.print(table)


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="The format to migrate the lake to: iceberg.")] = "iceberg",
) -> None:
    """Turn this Parquet lake into an Iceberg lake in place: each batch's files become one snapshot per
    table (no row rewritten; lake.catalog picks the catalog). A Parquet lake left as it is keeps
    working."""
    if to != "iceberg":
        raise typer.BadParameter(f"--to {to}: a lake migrates to iceberg only")
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    with workdir_lock(workdir, "data migrate"):
        count = Lake(workdir, config.spec).migrate_to_iceberg(config.lake.catalog, config.lake.namespace)
    console.print(f"{workdir.lake} is an Iceberg lake: {count} snapshot(s) registered")


@app.command()
def expire(
    keep_batches: Annotated[
        int | None, typer.Option(help="Keep the snapshots of this many newest batches (lake.keep_batches).")
    ] = None,
) -> None:
    """An Iceberg lake: expire the snapshots of older batches (rows are never removed; only time
    travel to those batches, `features dataset --as-of`, goes)."""
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    with workdir_lock(workdir, "data expire"):
        expired = Lake(workdir, config.spec).expire_snapshots(keep_batches or config.lake.keep_batches)
    count = sum(len(ids) for ids in expired.values())
    console.print(f"expired {count} snapshot(s): " + ", ".join(f"{n} {len(i)}" for n, i in expired.items()))


@app.command()
def extract(
    ds: Annotated[
        str | None, typer.Option("--ds", help="Logical date YYYY-MM-DD: run the extraction for it.")
    ] = None,
    load_sources: Annotated[
        bool,
        typer.Option(
            "--load-sources", help="Load the lake's records into the MySQL source tables (data.extract.url)."
        ),
    ] = False,
) -> None:
    """Seed 003's templated extraction on data.extract.source (duckdb over the lake, or mysql): the
    rolling window table of the use case, for one logical date; or seed a MySQL source from the lake."""
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    settings, lake = config.data.extract, Lake(workdir, config.spec)
    if not load_sources and ds is None:
        raise typer.BadParameter("give --ds YYYY-MM-DD, --load-sources, or both")
    if load_sources and (settings.source != "mysql" or not settings.url):
        raise typer.BadParameter("--load-sources needs data.extract.source: mysql and data.extract.url")
    with workdir_lock(workdir, "data extract"):  # the DuckDB source's window table is the workdir's
        _extract(config, lake, ds, load_sources)


def _extract(config: FlywheelConfig, lake: Lake, ds: str | None, load_sources: bool) -> None:
    from flywheel.data.extract import load_mysql_sources, parse_ds, run_extraction

    settings = config.data.extract
    if load_sources:
        loaded = load_mysql_sources(config.spec, lake, settings.url)
        console.print("loaded " + ", ".join(f"{name}: {rows:,} rows" for name, rows in loaded.items()))
    if ds is not None:
        result = run_extraction(config.spec, settings, lake, parse_ds(ds))
        window = ", ".join(f"{day}: {rows:,}" for day, rows in result.window.items())
        console.print(
            f"{result.target} on {result.source}: {result.rows_for_ds:,} rows for {result.ds} "
            f"({result.rows_deleted:,} deleted); window {window}"
        )
