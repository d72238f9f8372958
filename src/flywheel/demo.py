"""The one-command demo: the whole loop on generated data, closing on data.

A first champion is trained on a one-year history and served; simulated traffic goes through the
service; then one tick of ``flywheel loop`` (the same function) takes a four-month batch in which
prices rise: drift is detected (against a reference profile of the young business; the price shows in
``avg_order_value_90d``), the retrain's challenger — trained on the longer history — beats the
champion under the registry's own rule, the run publishes, the running service hot-swaps to it, and
``flywheel model rollback`` takes it back. Every stage's seconds are recorded.

Re-running on the same workdir finds the generated and simulated batches already in the lake; the
loop tick then declines the retrain (nothing new, or the cooldown) and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.errors import FlywheelError
from flywheel.features import labels as labels_module
from flywheel.features import online
from flywheel.features import ops as feature_ops
from flywheel.features.snapshots import snapshot_files
from flywheel.lock import locks_workdir
from flywheel.monitoring import estimates, performance, traffic
from flywheel.pipeline.runner import run_pipeline
from flywheel.pipeline.runs import PipelineRecord
from flywheel.registry import registry
from flywheel.registry.registry import METRIC_NAMES
from flywheel.retraining import loop
from flywheel.serving.local import call, local_service
from flywheel.serving.predlog import read_log
from flywheel.serving.schemas import bodies
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
DEMO_BATCH_ID = "demo-batch-1"


@dataclass
class DemoSummary:
    stages: list[tuple[str, str, float]] = field(default_factory=list)  # (stage, what it did, seconds)
    batches: list[dict[str, Any]] = field(default_factory=list)
    pipeline_run_id: str | None = None
    first_champion: str | None = None
    champion: str | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    after_promotion: list[dict[str, Any]] = field(default_factory=list)
    after_rollback: list[dict[str, Any]] = field(default_factory=list)
    tick: loop.Tick | None = None
    performance_report: Path | None = None

    @property
    def seconds(self) -> float:
        return sum(s for _, _, s in self.stages)


def demo_config(config: FlywheelConfig) -> FlywheelConfig:
    """The use case's demo scenario (``UseCase.demo``) on top of ``config``."""
    return apply_overrides(config, config.spec.demo)


class _Stages:
    """Records each finished stage with the seconds since the previous one."""

    def __init__(self, summary: DemoSummary, on_step: Callable[[str], None] | None):
        self.summary, self.on_step, self.last = summary, on_step, time.perf_counter()

    def __call__(self, name: str, detail: str, seconds: float | None = None) -> None:
        now = time.perf_counter()
        self.summary.stages.append((name, detail, now - self.last if seconds is None else seconds))
        self.last = now
        if self.on_step:
            self.on_step(f"{name}: {detail}")

    def event(self, name: str, status: str) -> None:
        if self.on_step and status not in ("RUNNING", "reused"):
            self.on_step(f"  pipeline step {name}: {status}")


@locks_workdir("demo")
def run(
    config: FlywheelConfig, workdir: Workdir, on_step: Callable[[str], None] | None = None
) -> DemoSummary:
    """generate → features → the pipeline (… → publish: first champion) → skew check → serve →
    simulated traffic → delayed-label performance → one loop tick with a price-shock batch (drift,
    retrain decision, the pipeline, promotion, publishing) → the service on the new champion →
    rollback → the service back on the first → summary."""
    summary = DemoSummary()
    stage = _Stages(summary, on_step)
    generated = ops.generate(config, workdir)
    again = "" if generated.created else " (already there)"
    stage("generate", f"{generated.batch_id} {_rows(generated)}{again}")
    built, labels = feature_ops.build(config, workdir)
    stage(
        "features",
        f"{len(built.dates_built)} of {built.dates_total} snapshot dates built, {built.rows_written:,} rows; "
        f"{labels.rows:,} labels, {labels.mix()}",
    )
    _first_champion(config, workdir, stage, summary)
    skew = online.check_skew(config, workdir)
    entities = f"{config.spec.snapshot.entity.name}s"
    stage("skew check", f"{skew.checked} {entities} online = offline, {len(skew.mismatches)} mismatches")

    # the service polls the champion alias every second, so a promotion reaches it quickly
    with local_service(apply_overrides(config, {"serving.poll_seconds": 1.0}), workdir) as url:
        summary.predictions = _predict(config, url, workdir)
        stage("serve", f"service on {url}; answering with v{summary.predictions[0]['model_version']}")
        days, per_date = config.spec.demo_traffic
        sent = traffic.simulate(config, workdir, url, days=days, per_date=per_date)
        stage(
            "traffic",
            f"{sent.requests:,} predictions over {len(sent.dates)} simulated days "
            f"({sent.dates[0]} … {sent.dates[-1]}) through /v1/score",
        )
        _wait_for_log(workdir, len(summary.predictions) + sent.requests)
        before = _performance(config, workdir, stage, summary)
        _tick(config, workdir, stage, summary)
        _labels_landed(config, workdir, stage, summary, before)
        decision = summary.tick.decision if summary.tick else None
        if decision is not None and decision.promoted:
            summary.after_promotion = _predict(config, url, workdir, wait_for=decision.champion_after)
            stage("hot swap", f"the running service answers with v{decision.champion_after}")
            current, previous = registry.rollback(config, workdir, reason="demo: rollback drill")
            summary.after_rollback = _predict(config, url, workdir, wait_for=previous)
            stage(
                "rollback",
                f"flywheel model rollback: v{current} → v{previous}; the service answers with v{previous}",
            )
    summary.champion = registry.champion_version(config, workdir)
    summary.batches = ops.status(config.spec, workdir)
    return summary


def first_outputs(record: PipelineRecord) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The eval, model_upload and publish outputs of the first pipeline run, which must have made a
    champion: a failed run or a version the quality gate stopped is an error saying so."""
    outputs = {s.name: s.outputs for s in record.steps}
    if record.status != "SUCCEEDED":
        failed = next((s for s in record.steps if s.status == "FAILED"), None)
        raise FlywheelError(
            f"pipeline run {record.run_id} {record.status}: {failed.error if failed else record.error}"
        )
    upload = outputs["model_upload"]
    if upload.get("gate_passed") != "true":
        raise FlywheelError(
            f"pipeline run {record.run_id}: v{upload.get('version')} failed the quality gate, so the "
            "demo has no first champion (the registry's log names the failed check, `flywheel model "
            "list` the version; a busy machine can miss registry.gates.max_p99_latency_ms)"
        )
    return outputs["eval"], upload, outputs["publish"]


def _first_champion(config: FlywheelConfig, workdir: Workdir, stage: _Stages, summary: DemoSummary) -> None:
    """The pipeline on the first history, unless a champion is serving already (a re-run)."""
    summary.first_champion = registry.champion_version(config, workdir)
    if summary.first_champion is not None:
        stage("pipeline", f"champion v{summary.first_champion} is serving already; not retrained")
        return
    record = run_pipeline(config, workdir, on_event=stage.event)
    summary.pipeline_run_id = record.run_id
    evaluated, upload, published = first_outputs(record)
    summary.first_champion = published["champion"]
    figures = [name for name in ("roc_auc", "macro_f1", "log_loss") if name in evaluated]
    shown = ", ".join(f"{METRIC_NAMES.get(name, name)} {float(evaluated[name]):.4f}" for name in figures)
    baseline = ", ".join(f"{float(evaluated[f'baseline_{name}']):.4f}" for name in figures)
    stage(
        "pipeline",
        f"run {record.run_id}: {config.training.model_type} test {shown} "
        f"vs baseline {config.training.baseline} {baseline}; "
        f"v{upload['version']} gate {'passed' if upload['gate_passed'] == 'true' else 'failed'}; "
        f"{published['reason']}; published {published['materialized']} "
        f"{config.spec.snapshot.entity.name}s online",
    )
    extracted = next((s.outputs for s in record.steps if s.name == "extract"), None)
    if extracted:  # seed 003: the extraction for the logical date chose the training rows
        stage(
            "  extract",
            f"{int(extracted['rows']):,} records of (logical date − lookback, {extracted['logical_date']}] "
            f"into the {extracted['window_dates']}-date window on {extracted['source']}: the training rows",
            0.0,
        )


def _tick(config: FlywheelConfig, workdir: Workdir, stage: _Stages, summary: DemoSummary) -> None:
    """One tick of ``flywheel loop --once --simulate``: the same function the loop runs."""
    summary.tick = tick = loop.tick(
        config, workdir, simulate=True, on_event=stage.event, batch_id=DEMO_BATCH_ID
    )
    for name, detail in tick.stages:
        stage(f"loop: {name}", detail, tick.seconds[name])
    decision = tick.decision
    if decision is not None:
        for trigger in decision.triggers:
            if trigger.name in ("drift", "performance") and trigger.value not in ("off", "n/a"):
                where = f"; report {decision.reports['drift']}" if trigger.name == "drift" else ""
                verdict = "FIRED" if trigger.fired else "not fired"
                detail = f"{trigger.value}, fires at {trigger.threshold}: {verdict} ({trigger.detail}){where}"
                stage(f"  {trigger.name}", detail, 0.0)
        if decision.promotion_reason:
            stage("  promotion", decision.promotion_reason, 0.0)
    if not tick.ok:
        raise FlywheelError(f"the loop tick failed at {tick.failed_stage}: {tick.error}")


def _predict(
    config: FlywheelConfig, url: str, workdir: Workdir, count: int = 5, wait_for: str | None = None
) -> list[dict[str, Any]]:
    """A few predictions; with ``wait_for``, first wait (≤ 30 s) until the service serves that version."""
    deadline = time.monotonic() + 30
    while wait_for and call(f"{url}/v1/model")["version"] != wait_for:
        if time.monotonic() > deadline:
            raise FlywheelError(f"the service did not swap to v{wait_for} within 30 s")
        time.sleep(0.1)
    names = bodies(config.spec)
    if not names.request:
        key = config.spec.snapshot.entity.join_key
        ids = pq.read_table(snapshot_files(workdir)[-1]).column(key).to_pylist()[:count]
        return [call(f"{url}/v1/predict", {key: entity}) for entity in ids]
    # callers send their records: the newest label rows as a caller would hold them (no label)
    rows = labels_module.current(config, workdir)
    fields = [names.key, *([names.snapshot_key] if names.snapshot_key else []), *names.request]
    records = rows.slice(max(0, rows.num_rows - count)).select(fields).to_pylist()
    return [call(f"{url}/v1/predict", record) for record in records]


def _wait_for_log(workdir: Workdir, answered: int, timeout: float = 60.0) -> None:
    """Until the service's log writer, which writes in batches behind the answers, holds every one of
    the ``answered`` predictions: performance must not miss the newest week's."""
    deadline = time.monotonic() + timeout
    while len(read_log(workdir.predictions, columns=("request_id",))) < answered:
        if time.monotonic() > deadline:
            _logger.warning("the prediction log holds fewer than the %d answered predictions", answered)
            return
        time.sleep(0.2)


def _performance(
    config: FlywheelConfig, workdir: Workdir, stage: _Stages, summary: DemoSummary
) -> performance.PerformanceReport:
    report = performance.evaluate(config, workdir)
    summary.performance_report = performance.write(report, workdir)
    observed = [p for p in report.periods if p.status == "observed" and p.roc_auc is not None]
    pending = [p for p in report.periods if p.status == "pending"]
    auc = sum(p.roc_auc for p in observed) / len(observed) if observed else None
    estimated = [p.estimated["roc_auc"] for p in pending if "roc_auc" in p.estimated]
    stage(
        "performance",
        f"labels observed through {report.observed_until[:10]}: {len(observed)} weekly periods labelled"
        + (f" (mean ROC-AUC {auc:.3f})" if auc is not None else "")
        + f", {len(pending)} pending the {config.labels.horizon_days}-day horizon"
        + (f" (estimated ROC-AUC {sum(estimated) / len(estimated):.3f})" if estimated else ""),
    )
    return report


def _labels_landed(
    config: FlywheelConfig,
    workdir: Workdir,
    stage: _Stages,
    summary: DemoSummary,
    before: performance.PerformanceReport,
) -> None:
    """Performance again once the loop's batch has revealed the labels of the pending weeks: each
    estimate made before its labels against the realized figure."""
    report = performance.evaluate(config, workdir)
    summary.performance_report = performance.write(report, workdir)
    estimates.alert_concept_shift(config, workdir, report.periods)
    realized = {p.start: p.roc_auc for p in report.periods if p.roc_auc is not None}
    pairs = [
        (p.estimated["roc_auc"], realized[p.start])
        for p in before.periods
        if p.status == "pending" and "roc_auc" in p.estimated and p.start in realized
    ]
    if not pairs:
        return
    error = sum(abs(estimate - actual) for estimate, actual in pairs) / len(pairs)
    shifted = sum(bool(p.concept_shift) for p in report.periods)
    stage(
        "labels landed",
        f"{len(pairs)} weeks estimated before their labels: ROC-AUC estimated vs realized, mean absolute "
        f"error {error:.3f}; {shifted} period(s) outside the estimate's band",
    )


def _rows(result: ops.CommitResult) -> str:
    return ", ".join(f"{name}={rows:,}" for name, rows in result.rows.items())
