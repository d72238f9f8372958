"""``flywheel monitor``, ``simulate traffic``, ``retrain`` and ``loop``: watching the champion and
retraining it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from flywheel.cli.context import STATE, console, progress
from flywheel.monitoring import estimates, monitor, performance, traffic
from flywheel.monitoring.drift import DriftReport, psi_level
from flywheel.retraining import loop, retrain

app = typer.Typer(help="Drift and delayed-label performance of the champion.", no_args_is_help=True)
simulate_app = typer.Typer(help="Simulated activity for trying the loop.", no_args_is_help=True)
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]


def _days(value: str) -> int:
    match = re.fullmatch(r"(\d+)d?", value.strip())
    if not match or int(match.group(1)) == 0:
        raise typer.BadParameter(f"expected a number of days such as 30d, got {value!r}")
    return int(match.group(1))


def show_drift(report: DriftReport, meta: dict, path) -> None:
    table = Table(
        "column",
        "test",
        "score",
        "threshold",
        "drifted",
        "PSI",
        title=f"{meta['current']} vs champion v{meta['champion_version']} training data",
    )
    for c in [*report.columns, *([report.prediction] if report.prediction else [])]:
        psi = f"{c.psi:.3f} ({psi_level(c.psi)})" if c.psi is not None else ""
        drifted = "[red]yes[/red]" if c.drifted else "no"
        table.add_row(c.column, c.test, f"{c.score:.4g}", f"{c.threshold:g}", drifted, psi)
    console.print(table)
    console.print(
        f"dataset drift: {'YES' if report.dataset_drift else 'no'} ({report.drifted_share:.0%} of "
        f"columns drifted, threshold {report.share_threshold:.0%}); report: {path} "
        f"and {path.with_suffix('.html')}"
    )


def _show_skipped(rows: int, by_column: dict[str, int]) -> None:
    if rows:
        reasons = ", ".join(f"{n:,} with a bad {column}" for column, n in sorted(by_column.items()))
        detail = f" ({reasons})" if reasons else ""
        console.print(
            f"[yellow]{rows:,} unreadable prediction-log rows skipped[/yellow]{detail}; see the log"
        )


@app.command()
def drift(
    source: Annotated[
        str, typer.Option(help="snapshot (offline store) or log (served traffic).")
    ] = "snapshot",
    date_: Annotated[
        str | None, typer.Option("--date", help="Snapshot date YYYY-MM-DD (default: the newest).")
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="Prediction-log window such as 30d (default: monitoring.window_days).")
    ] = None,
    from_: Annotated[
        datetime | None, typer.Option("--from", formats=DATE_FORMATS, help="Log window start (UTC).")
    ] = None,
    to: Annotated[datetime | None, typer.Option(formats=DATE_FORMATS, help="Log window end (UTC).")] = None,
    evidently: Annotated[
        bool, typer.Option("--evidently", help="Also export an Evidently 0.7 report (needs evidently).")
    ] = False,
) -> None:
    """Per-feature and prediction drift against the champion's reference profile; exits 1 on
    dataset drift. Writes a JSON and a static HTML report."""
    if source not in ("snapshot", "log"):
        raise typer.BadParameter(f"unknown source {source!r}; expected snapshot or log")
    if source == "snapshot" and (window or from_ or to):
        raise typer.BadParameter("--window/--from/--to select prediction-log rows; add --source log")
    if window and (from_ or to):
        raise typer.BadParameter("give --window or --from/--to, not both")
    if from_ and to and from_ >= to:
        raise typer.BadParameter(f"--from ({from_:%Y-%m-%d %H:%M}) must be before --to ({to:%Y-%m-%d %H:%M})")
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    until = to.replace(tzinfo=UTC) if to else None
    since = from_.replace(tzinfo=UTC) if from_ else None
    if window:
        until = datetime.now(UTC)
        since = until - timedelta(days=_days(window))
    with progress("drift"):
        report, meta, path = monitor.drift(config, workdir, source, date_, since, until, evidently)
    show_drift(report, meta, path)
    _show_skipped(meta.get("skipped_rows", 0), meta.get("skipped", {}))
    if "evidently_report" in meta:
        console.print(f"Evidently report: {meta['evidently_report']}")
    if report.dataset_drift:
        raise typer.Exit(1)


@app.command("performance")
def performance_command(
    period_days: Annotated[
        int | None, typer.Option(help="Period length (default: monitoring.period_days).")
    ] = None,
    by_arm: Annotated[
        bool,
        typer.Option(
            "--by-arm", help="Also each rollout arm and version, and a shadow against the champion."
        ),
    ] = False,
) -> None:
    """ROC-AUC, PR-AUC, calibration and observed positive rate (multiclass: accuracy, macro-F1, log
    loss) of logged predictions per period of data time, as far as newer lake data has revealed the
    labels; the rest is shown as pending. ``--by-arm`` adds each rollout arm's figures."""
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    report = performance.evaluate(config, workdir, period_days)
    path = performance.write(report, workdir)
    estimates.alert_concept_shift(config, workdir, report.periods)
    # multiclass: accuracy, macro-F1 and log loss in place of the binary observed rate
    figures = (
        {"ROC-AUC": "roc_auc", "accuracy": "accuracy", "macro-F1": "macro_f1", "log loss": "log_loss"}
        | {"Brier": "brier", "mean p": "mean_probability"}
        if config.spec.classes
        else {"ROC-AUC": "roc_auc", "PR-AUC": "pr_auc", "Brier": "brier", "mean p": "mean_probability"}
        | {"observed rate": "observed_rate"}
    )
    table = Table(
        "period from",
        "predictions",
        "labelled",
        "status",
        *figures,
        title=f"Performance by data time (labels observed through {report.observed_until[:10]}, "
        f"horizon {report.horizon_days} d)",
    )

    def fmt(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    for p in report.periods:
        status = {"pending": "[yellow]pending[/yellow]", "partial": "partial"}.get(p.status, p.status)
        values = [fmt(getattr(p, name)) for name in figures.values()]
        table.add_row(p.start, f"{p.predictions:,}", f"{p.labelled:,}", status, *values)
    if report.periods:
        console.print(table)
    else:
        console.print("no logged prediction has a data time (as_of) yet: serve or simulate traffic first")
    reliability = Table(
        "probability", "labelled", "mean p", "observed rate", title="Calibration (every labelled prediction)"
    )
    for row in report.calibration():
        reliability.add_row(
            row["bin"], f"{row['predictions']:,}", fmt(row["mean_probability"]), fmt(row["observed_rate"])
        )
    if reliability.row_count:
        console.print(reliability)
    _show_estimates(report, config, fmt)
    console.print(
        f"{report.predictions:,} logged predictions; {report.without_as_of:,} without a data time, "
        f"{report.outside_population:,} observable but outside the label population; report: {path}"
    )
    _show_skipped(report.skipped_rows, report.skipped)
    if by_arm:
        _show_arms(report, figures, fmt, config)


def _show_estimates(report: performance.PerformanceReport, config, fmt) -> None:
    """Per period, the figures estimated from the probabilities alone beside the realized ones: the
    pending weeks get a figure before their labels, and a realized one outside its band is flagged."""
    first = config.retrain.performance_metric
    second = ("accuracy" if first == "macro_f1" else "macro_f1") if config.spec.classes else "f1"
    table = Table(
        "period from",
        "status",
        f"est. {first}",
        "band",
        "realized",
        "est. error",
        f"est. {second}",
        "realized",
        "concept shift",
        title="Estimated before labels (confidence-based, from calibrated probabilities)",
    )
    for p in report.periods:
        if not p.estimated:
            continue
        low_high = p.band.get(first)
        table.add_row(
            p.start,
            p.status,
            fmt(p.estimated.get(first)),
            f"{low_high[0]:.3f}–{low_high[1]:.3f}" if low_high else "",
            fmt(getattr(p, first)),
            f"{p.estimation_error[first]:+.3f}" if first in p.estimation_error else "",
            fmt(p.estimated.get(second)),
            fmt(getattr(p, second)),
            "[red]" + ", ".join(p.concept_shift) + "[/red]" if p.concept_shift else "",
        )
    if not table.row_count:
        return
    console.print(table)
    console.print(estimates.ASSUMPTION)
    uncalibrated = sorted(v for v, r in report.versions.items() if not r.calibrated)
    if uncalibrated:
        console.print(
            f"[yellow]version(s) {', '.join(uncalibrated)} were not calibrated in training: their estimates "
            "lean on uncalibrated probabilities[/yellow]"
        )


def _show_arms(report: performance.PerformanceReport, figures: dict[str, str], fmt, config) -> None:
    table = Table("arm", "version", "predictions", "labelled", *figures, title="By rollout arm")
    for arm in report.arms():
        values = [fmt(arm.get(name)) for name in figures.values()]
        table.add_row(
            arm["arm"], f"v{arm['version']}", f"{arm['predictions']:,}", f"{arm['labelled']:,}", *values
        )
    console.print(table)
    for paired in report.shadow_comparisons(config):
        compared = (
            f"shadow v{paired['shadow']} vs champion v{paired['champion']} on the same "
            f"{paired['pairs']:,} labelled requests: "
        )
        if "error" in paired:
            console.print(compared + paired["error"])
            continue
        console.print(
            compared + f"{paired['metric']} {paired['delta']:+.4f} "
            f"(CI {paired['ci_low']:+.4f}..{paired['ci_high']:+.4f}; positive: the shadow is better)"
        )


@simulate_app.command("traffic")
def traffic_command(
    days: Annotated[int, typer.Option(help="Simulated days of data time, back from --end.")] = 84,
    per_date: Annotated[int, typer.Option(help="Predictions per simulated snapshot date.")] = 200,
    end: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last simulated day (default: newest).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="A running service (default: start one in this process).")
    ] = None,
    seed: int = 0,
) -> None:
    """Score sampled entities through the service for each simulated day, with their
    features as of that day, so that the prediction log and its ground truth exist."""
    from flywheel.serving.local import local_service

    config = STATE.config()
    workdir = STATE.workdir_for(config)
    last: date | None = end.date() if end else None
    with progress("traffic") as stage:

        def run(base: str) -> traffic.TrafficResult:
            return traffic.simulate(
                config, workdir, base, days, per_date, last, seed, lambda d, n: stage(f"{d}: {n} predictions")
            )

        if url:
            result = run(url.rstrip("/"))
        else:
            with local_service(config, workdir) as base:
                result = run(base)
    versions = ", ".join(f"v{v}: {n:,}" for v, n in sorted(result.versions.items()))
    console.print(
        f"{result.requests:,} predictions over {len(result.dates)} simulated days "
        f"({result.dates[0]} … {result.dates[-1]}); model versions {versions}"
    )


def show_decision(decision: retrain.Decision) -> None:
    table = Table("trigger", "value", "threshold", "fired", "detail", title="Retrain triggers")
    for t in decision.triggers:
        fired = "[red]FIRED[/red]" if t.fired else "no"
        table.add_row(t.name, t.value, t.threshold, fired, t.detail)
    console.print(table)
    console.print(f"cooldown: {decision.cooldown}{' — IN COOLDOWN' if decision.in_cooldown else ''}")
    verb = "retrain" if decision.retrain else "no retrain"
    console.print(f"decision: [bold]{verb}[/bold] — {'; '.join(decision.reasons)}")
    if decision.pipeline_status:
        console.print(
            f"pipeline run {decision.pipeline_run_id} {decision.pipeline_status}; candidate "
            f"v{decision.candidate} gate {'passed' if decision.gate_passed else 'failed'}"
        )
    if decision.promotion_reason:
        console.print(f"{'PROMOTED' if decision.promoted else 'not promoted'}: {decision.promotion_reason}")
    if decision.error:
        console.print(f"[red]retrain failed[/red]: {decision.error}; champion v{decision.champion} kept")
    champion = f"v{decision.champion_after}" if decision.champion_after else "none"
    console.print(f"champion: {champion}; decision recorded: {decision.reports['decision']}")
    if decision.rollback:
        console.print(f"undo with: {decision.rollback}")


def retrain_command(
    check_only: Annotated[
        bool, typer.Option("--check-only", help="Evaluate and record; run nothing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain whatever the triggers say.")] = False,
) -> None:
    """Evaluate the retraining triggers and the cooldown, decide, and retrain on the latest data;
    the candidate goes through the gate and the champion/challenger comparison."""
    config = STATE.config()
    workdir = STATE.workdir_for(config)
    with progress("retrain") as stage:
        decision = retrain.retrain(
            config, workdir, check_only, force, on_event=lambda name, status: stage(f"{name} {status}")
        )
    show_decision(decision)
    if decision.error:
        raise typer.Exit(1)


def loop_command(
    cron: Annotated[str | None, typer.Option(help="Tick schedule (default: retrain.cron), UTC.")] = None,
    once: Annotated[bool, typer.Option("--once", help="One tick now, then exit.")] = False,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Each tick appends a simulated batch instead of the inbox.")
    ] = False,
) -> None:
    """The continuous-training loop: new batches → features → monitor → decide → retrain → publish
    (online store, champion), at every cron time (or once)."""
    from croniter import croniter

    if cron and not croniter.is_valid(cron):
        raise typer.BadParameter(f"not a cron expression: {cron!r} (expected e.g. '0 2 * * *')")
    config = STATE.config()
    workdir = STATE.workdir_for(config)

    def report(tick: loop.Tick) -> None:
        status = "[green]ok[/green]" if tick.ok else f"[red]failed at {tick.failed_stage}[/red]: {tick.error}"
        seconds = ", ".join(f"{stage} {s:.1f}s" for stage, s in tick.seconds.items())
        console.print(f"tick {tick.started}: {status} ({seconds})")

    result = loop.run(
        config,
        workdir,
        cron,
        once,
        simulate,
        on_stage=lambda stage, detail: console.print(f"  {stage}: {detail}"),
        on_tick=report,
    )
    if result is not None and result.decision is not None:
        show_decision(result.decision)
    if result is not None and not result.ok:
        raise typer.Exit(1)
