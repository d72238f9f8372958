"""``flywheel retrain``: evaluate the retraining triggers, decide, and run the pipeline.

Triggers (``retrain`` in the config), each with its value and threshold:

* ``performance`` — labelled ROC-AUC over the newest ``performance_days`` of data time is below
  ``min_roc_auc`` (needs ``min_labelled`` labelled predictions for a verdict); with
  ``performance_source: estimated`` (or ``either``) the figure estimated from the calibrated
  probabilities of every prediction in that window, labelled or not, counts too — weeks before
  labels could show a drop;
* ``drift`` — dataset drift of the newest feature snapshot against the champion's reference profile;
* ``schedule`` — the champion was registered ``schedule_days`` or more ago;
* ``new_data`` — ``min_new_batches`` lake batches neither the champion nor the challenger was
  trained on;
* ``no_champion`` — there is nothing to serve yet.

Any fired trigger starts a retrain unless the last retrain began less than ``cooldown_hours`` ago;
``force`` retrains regardless. The retrain is the pipeline on the latest data: the candidate passes
the registry's gate and is compared with the champion on the new test split, and the promotion
policy decides. Every decision — including "no retrain" — is recorded as a run of the
``<experiment>-retrain`` MLflow experiment and a JSON report, with its reasons.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.data.lake import Lake
from flywheel.errors import FlywheelError
from flywheel.lock import locks_workdir
from flywheel.monitoring import estimates, monitor, performance
from flywheel.monitoring.alerts import alert
from flywheel.pipeline.runner import run_pipeline
from flywheel.registry import registry
from flywheel.registry.registry import METRIC_NAMES
from flywheel.training import tracking
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


@dataclass
class Trigger:
    name: str
    value: str
    threshold: str
    fired: bool
    detail: str = ""


@dataclass
class Decision:
    decided_at: str
    champion: str | None
    triggers: list[Trigger]
    in_cooldown: bool
    cooldown: str
    forced: bool
    check_only: bool
    retrain: bool
    reasons: list[str]
    pipeline_run_id: str | None = None
    pipeline_status: str | None = None
    candidate: str | None = None
    gate_passed: bool | None = None
    promoted: bool | None = None
    promotion_reason: str | None = None
    rollout: str | None = None  # the rollout the winner started instead of its promotion (rollout.stages)
    published: bool = False  # the run's publish step ran: the online store holds the newest snapshots
    champion_after: str | None = None
    error: str | None = None
    rollback: str | None = None
    reports: dict[str, str] = field(default_factory=dict)
    record_run_id: str | None = None

    @property
    def outcome(self) -> str:
        if not self.retrain:
            return "no retrain"
        if self.check_only:
            return "would retrain (check only)"
        if self.error:
            return "retrain failed"
        if self.promoted:
            return f"promoted v{self.candidate}"
        if self.rollout:
            return f"v{self.candidate} rolling out ({self.rollout})"
        return f"v{self.candidate} not promoted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


def _performance(config: FlywheelConfig, workdir: Workdir) -> Trigger:
    rules = config.retrain
    metric, bound = rules.performance_metric, rules.performance_bound
    name = METRIC_NAMES.get(metric, metric)
    counted = "labelled" if rules.performance_source == "realized" else "predictions"
    threshold = f"< {bound:g} (≥ {rules.min_labelled} {counted})"
    try:
        report = performance.evaluate(config, workdir)
    except FlywheelError as error:
        return Trigger("performance", "n/a", threshold, False, str(error))
    estimates.alert_concept_shift(config, workdir, report.periods)
    found = []  # (what, value, rows, what the rows are)
    if rules.performance_source in ("realized", "either"):
        labelled, value = report.recent(rules.performance_days, metric)
        found.append((f"{name}", value, labelled, "labelled predictions"))
    if rules.performance_source in ("estimated", "either"):
        predictions, value = report.recent_estimate(rules.performance_days, metric)
        found.append((f"estimated {name}", value, predictions, "predictions (estimated)"))
    judged = [f for f in found if f[2] >= rules.min_labelled and f[1] is not None]
    if not judged:
        counts = "; ".join(f"{rows} {unit}" for _, _, rows, unit in found)
        return Trigger("performance", "n/a", threshold, False, f"{counts} in the newest window")
    value_text = ", ".join(f"{what} {value:.4f}" for what, value, _, _ in judged)
    detail = "; ".join(
        f"{rows} {unit} over the newest {rules.performance_days} days" for _, _, rows, unit in judged
    )
    fired = any(value < bound for _, value, _, _ in judged)
    if fired:
        alert(config, workdir, "performance", f"performance drop: {value_text} {threshold}; {detail}")
    return Trigger("performance", value_text, threshold, fired, detail)


def _drift(config: FlywheelConfig, workdir: Workdir, reports: dict[str, str], champion: str) -> Trigger:
    threshold = f"≥ {config.monitoring.drift_share:.0%} of columns drifted"
    if not config.retrain.on_drift:
        return Trigger("drift", "off", threshold, False, "retrain.on_drift is false")
    try:
        report, meta, path = monitor.drift(config, workdir, champion=champion)
    except FlywheelError as error:
        return Trigger("drift", "n/a", threshold, False, str(error))
    reports["drift"] = str(path)
    drifted = [c.column for c in report.columns if c.drifted]
    return Trigger(
        "drift",
        f"{report.drifted_share:.0%} drifted",
        threshold,
        report.dataset_drift,
        f"{meta['current']}: {', '.join(drifted) or 'no column drifted'}",
    )


def _schedule(config: FlywheelConfig, client: Any, champion: str) -> Trigger:
    days = config.retrain.schedule_days
    created = client.get_model_version(config.registry.model_name, champion).creation_timestamp / 1000
    age = (time.time() - created) / 86400
    if days is None:
        return Trigger("schedule", f"{age:.1f} days", "off", False, "retrain.schedule_days is null")
    return Trigger(
        "schedule", f"{age:.1f} days", f"≥ {days:g} days", age >= days, f"champion v{champion} age"
    )


def _new_data(config: FlywheelConfig, workdir: Workdir, client: Any, champion: str) -> Trigger:
    """Batches neither the champion nor the challenger was trained on: a challenger that lost on
    the new data does not make the same data trigger again."""
    needed = config.retrain.min_new_batches
    name = config.registry.model_name
    versions = [champion, registry.alias_version(client, name, registry.CHALLENGER)]
    trained_on: set[str] = set()
    for version in dict.fromkeys(v for v in versions if v):
        run = registry.version_run(client, name, version)
        trained_on |= set(filter(None, run.data.tags.get("flywheel.lake_batches", "").split(",")))
    new = [b for b in Lake(workdir, config.spec).batch_ids() if b not in trained_on]
    newest = ", ".join(f"v{v}" for v in dict.fromkeys(v for v in versions if v))
    detail = f"new batches: {', '.join(new)}" if new else f"{newest} trained on every lake batch"
    if needed is None:
        return Trigger("new_data", f"{len(new)} batches", "off", False, detail)
    return Trigger("new_data", f"{len(new)} batches", f"≥ {needed}", len(new) >= needed, detail)


def _client_and_experiment(config: FlywheelConfig, workdir: Workdir) -> tuple[Any, str]:
    client = registry.mlflow_client(config, workdir)
    name = f"{config.tracking.experiment}-retrain"
    return client, tracking.ensure_experiment(client, config, workdir, name)


def _last_retrain(client: Any, experiment_id: str) -> float | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string="tags.`flywheel.retrained` = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.start_time / 1000 if runs else None


def check(
    config: FlywheelConfig, workdir: Workdir, force: bool = False, check_only: bool = False
) -> Decision:
    """Evaluate every trigger and the cooldown; decide (nothing is run or recorded here)."""
    client, experiment_id = _client_and_experiment(config, workdir)
    champion = registry.alias_version(client, config.registry.model_name, registry.CHAMPION)
    reports: dict[str, str] = {}
    if champion is None:
        triggers = [Trigger("no_champion", "none", "a champion", True, "nothing is serving")]
    else:
        triggers = [
            _performance(config, workdir),
            _drift(config, workdir, reports, champion),
            _schedule(config, client, champion),
            _new_data(config, workdir, client, champion),
        ]
    last = _last_retrain(client, experiment_id)
    hours = config.retrain.cooldown_hours
    since = (time.time() - last) / 3600 if last is not None else None
    in_cooldown = since is not None and since < hours
    cooldown = (
        f"last retrain {since:.1f} h ago (cooldown {hours:g} h)"
        if since is not None
        else f"no retrain yet (cooldown {hours:g} h)"
    )
    fired = [t for t in triggers if t.fired]
    reasons = [f"{t.name}: {t.value} ({t.threshold})" for t in fired]
    if force:
        retrain, reasons = True, ["forced (--force)", *reasons]
    elif fired and in_cooldown:
        retrain, reasons = False, [f"in cooldown: {cooldown}", *reasons]
    elif fired:
        retrain = True
    else:
        retrain, reasons = False, ["no trigger fired"]
    return Decision(
        decided_at=datetime.now(UTC).isoformat(),
        champion=champion,
        triggers=triggers,
        in_cooldown=in_cooldown,
        cooldown=cooldown,
        forced=force,
        check_only=check_only,
        retrain=retrain,
        reasons=reasons,
        reports=reports,
    )


@locks_workdir("retrain")
def retrain(
    config: FlywheelConfig,
    workdir: Workdir,
    check_only: bool = False,
    force: bool = False,
    on_event: Callable[[str, str], None] | None = None,
) -> Decision:
    """Decide, run the pipeline when the decision is to retrain (not with ``check_only``), record."""
    decision = check(config, workdir, force=force, check_only=check_only)
    client, experiment_id = _client_and_experiment(config, workdir)
    record = client.create_run(
        experiment_id,
        run_name=f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        tags={
            "flywheel.kind": "retrain-decision",
            "flywheel.retrain": str(decision.retrain).lower(),
            "flywheel.retrained": str(decision.retrain and not check_only).lower(),
            "flywheel.check_only": str(check_only).lower(),
            "flywheel.reasons": "; ".join(decision.reasons)[:5000],
            **{f"trigger.{t.name}": f"{'FIRED' if t.fired else 'no'}: {t.value}" for t in decision.triggers},
        },
    )
    decision.record_run_id = record.info.run_id
    if decision.retrain and not check_only:
        try:
            _execute(config, workdir, decision, on_event)
        except KeyboardInterrupt:  # Ctrl-C: the pipeline run says CANCELLED; so does the decision
            client.set_tag(decision.record_run_id, "flywheel.outcome", "retrain cancelled")
            client.set_terminated(decision.record_run_id, "KILLED")
            raise
    if decision.champion_after is None:  # no run published: the champion is the one decided on
        decision.champion_after = decision.champion
    if decision.promoted and decision.champion:  # a first champion has nothing to roll back to
        decision.rollback = f"flywheel model rollback  (back to v{decision.champion})"
    decision.reports["decision"] = str(_write(decision, workdir))
    client.log_dict(decision.record_run_id, decision.to_dict(), "decision.json")
    client.set_tag(decision.record_run_id, "flywheel.outcome", decision.outcome)
    client.set_terminated(decision.record_run_id, "FAILED" if decision.error else "FINISHED")
    return decision


def _execute(
    config: FlywheelConfig,
    workdir: Workdir,
    decision: Decision,
    on_event: Callable[[str, str], None] | None,
) -> None:
    try:
        record = run_pipeline(config, workdir, on_event=on_event)
    except Exception as error:  # nothing was published: publishing is the pipeline's last step
        decision.pipeline_status, decision.error = "FAILED", f"{type(error).__name__}: {error}"
    else:
        decision.pipeline_run_id, decision.pipeline_status = record.run_id, record.status
        outputs = {s.name: s.outputs for s in record.steps}
        upload, published = outputs.get("model_upload", {}), outputs.get("publish", {})
        decision.candidate = upload.get("version")
        if "gate_passed" in upload:
            decision.gate_passed = upload["gate_passed"] == "true"
        if published:
            decision.published, decision.champion_after = True, published.get("champion") or None
            decision.promoted = published.get("promoted") == "true"
            decision.promotion_reason = published.get("reason")
            decision.rollout = published.get("rollout") or None
        if record.status != "SUCCEEDED":
            failed = next((s for s in record.steps if s.status == "FAILED"), None)
            decision.error = (failed.error if failed else record.error) or f"pipeline {record.status}"
    if decision.error:
        alert(
            config,
            workdir,
            "retrain_failed",
            f"retrain failed ({decision.error}); champion v{decision.champion} keeps serving",
            pipeline_run_id=decision.pipeline_run_id,
        )
    elif decision.gate_passed is False:
        alert(
            config,
            workdir,
            "gate_failed",
            f"candidate v{decision.candidate} failed the quality gate; champion v{decision.champion} "
            "keeps serving",
            pipeline_run_id=decision.pipeline_run_id,
        )


def _write(decision: Decision, workdir: Workdir) -> Path:
    workdir.reports.mkdir(parents=True, exist_ok=True)
    path = workdir.reports / f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json"
    path.write_text(json.dumps(decision.to_dict(), indent=2))
    return path
