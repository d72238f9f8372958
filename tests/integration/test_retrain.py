"""Retraining decisions, the loop and alerts on a served workdir: real MLflow registry, real pipeline,
real Feast online store; the webhook is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pyarrow.compute as pc
import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.features import labels
from flywheel.registry import registry
from flywheel.retraining import loop, retrain
from flywheel.serving.predlog import PredictionLog, utc_iso
from flywheel.training import train
from flywheel.workdir import Workdir
from tests.conftest import tree_digest

QUIET = {"retrain.on_drift": False, "retrain.schedule_days": None, "retrain.min_new_batches": None}


@pytest.fixture
def workdir(served_workdir: Workdir, tmp_path: Path) -> Workdir:
    target = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, target.root)
    return target


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def fired(decision: retrain.Decision) -> list[str]:
    return [t.name for t in decision.triggers if t.fired]


def test_no_trigger_means_no_retrain_and_the_decision_is_recorded(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    config = apply_overrides(training_config, QUIET)
    decision = retrain.retrain(config, workdir)
    assert not decision.retrain and decision.reasons == ["no trigger fired"]
    assert {t.name for t in decision.triggers} == {"performance", "drift", "schedule", "new_data"}
    assert fired(decision) == [] and decision.champion == decision.champion_after == "1"
    record = registry.mlflow_client(config, workdir).get_run(decision.record_run_id)
    assert record.data.tags["flywheel.retrain"] == "false"
    assert record.data.tags["flywheel.outcome"] == "no retrain"
    saved = json.loads(Path(decision.reports["decision"]).read_text())
    assert saved["reasons"] == ["no trigger fired"] and saved["outcome"] == "no retrain"


def test_schedule_drift_and_new_data_each_fire_alone(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    schedule = retrain.check(
        apply_overrides(training_config, {**QUIET, "retrain.schedule_days": 1e-6}), workdir
    )
    assert fired(schedule) == ["schedule"] and schedule.retrain
    # the newest snapshot drifts on the time-based features against the training years
    drift_config = apply_overrides(
        training_config, {**QUIET, "retrain.on_drift": True, "monitoring.drift_share": 0.01}
    )
    drift = retrain.check(drift_config, workdir)
    assert fired(drift) == ["drift"] and drift.retrain and Path(drift.reports["drift"]).exists()
    assert Path(drift.reports["drift"]).with_suffix(".html").exists()
    assert (
        retrain.check(
            apply_overrides(training_config, {**QUIET, "retrain.min_new_batches": 1}), workdir
        ).retrain
        is False
    )
    ops.simulate(training_config, workdir, days=7, batch_id="next-week")
    new_data = retrain.check(
        apply_overrides(training_config, {**QUIET, "retrain.min_new_batches": 1}), workdir
    )
    assert fired(new_data) == ["new_data"] and "next-week" in new_data.triggers[-1].detail


def _log_predictions(workdir: Workdir, config: FlywheelConfig, good: bool) -> None:
    """Predictions on the newest label date, right (good) or inverted, so their ROC-AUC is 1 or 0."""
    table = labels.read(workdir)
    newest = pc.max(table.column(labels.TIMESTAMP_COLUMN)).as_py()
    rows = table.filter(pc.equal(table.column(labels.TIMESTAMP_COLUMN), newest)).to_pylist()
    log = PredictionLog(workdir.predictions / "predictions.db", flush_seconds=0.05)
    for i, row in enumerate(rows):
        label = row[config.labels.label_column]
        probability = 0.1 + 0.8 * (label if good else 1 - label)
        log.append(
            f"r{i}", utc_iso(newest), row["customer_id"], "1", probability, {}, "score", utc_iso(newest)
        )
    log.close()


@pytest.mark.parametrize("good", [True, False])
def test_performance_fires_alone_below_the_threshold(
    workdir: Workdir, training_config: FlywheelConfig, good: bool
) -> None:
    config = apply_overrides(training_config, {**QUIET, "retrain.min_labelled": 20})
    _log_predictions(workdir, config, good)
    decision = retrain.check(config, workdir)
    (performance,) = [t for t in decision.triggers if t.name == "performance"]
    assert performance.value == ("ROC-AUC 1.0000" if good else "ROC-AUC 0.0000")
    assert fired(decision) == ([] if good else ["performance"])
    alerts = workdir.reports / "alerts.jsonl"
    kinds = [json.loads(line)["kind"] for line in alerts.read_text().splitlines()] if alerts.exists() else []
    # the made-up scores rank perfectly (or backwards), far from what their probabilities promise: the
    # realized figures leave the estimate's band, so a concept shift is alerted besides
    assert "concept_shift" in kinds
    assert [k for k in kinds if k != "concept_shift"] == ([] if good else ["performance"])


def _weak_champion(workdir: Workdir, training_config: FlywheelConfig) -> str:
    """A weak champion: one two-leaf tree, promoted by hand past a lowered gate."""
    weak_config = apply_overrides(
        training_config,
        {
            "training.tuning.method": "none",
            "training.params": {"n_estimators": 1, "num_leaves": 2},
            "registry.gates.min_roc_auc": 0.0,
            "registry.gates.min_pr_auc": 0.0,
        },
    )
    weak_run = train.train(weak_config, workdir)
    weak = registry.register(weak_config, workdir, weak_run.run_id, weak_run.model_uri).version
    registry.promote(weak_config, workdir, weak, force=True)
    return weak


def test_forced_retrain_promotes_a_better_model_then_cooldown_and_rollback(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    weak = _weak_champion(workdir, training_config)
    config = apply_overrides(training_config, QUIET)
    decision = retrain.retrain(config, workdir, force=True)
    assert decision.retrain and decision.forced and decision.reasons[0] == "forced (--force)"
    assert decision.pipeline_status == "SUCCEEDED" and decision.gate_passed is True, decision.error
    assert decision.promoted is True, decision.promotion_reason
    assert decision.champion == weak and decision.champion_after == decision.candidate != weak
    assert registry.champion_version(config, workdir) == decision.candidate
    assert decision.rollback == f"flywheel model rollback  (back to v{weak})"

    held = retrain.check(apply_overrides(training_config, {**QUIET, "retrain.schedule_days": 1e-6}), workdir)
    assert fired(held) == ["schedule"] and held.in_cooldown and not held.retrain
    assert held.reasons[0].startswith("in cooldown")

    registry.rollback(config, workdir)
    assert registry.champion_version(config, workdir) == weak


def test_manual_promotion_policy_leaves_a_better_challenger_waiting(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    weak = _weak_champion(workdir, training_config)
    config = apply_overrides(training_config, {**QUIET, "registry.promotion": "manual"})
    decision = retrain.retrain(config, workdir, force=True)
    assert decision.gate_passed is True and decision.promoted is False and decision.rollback is None
    assert f"`flywheel model promote {decision.candidate}` promotes it" in decision.promotion_reason
    assert registry.champion_version(config, workdir) == weak
    assert registry.promote(config, workdir, decision.candidate).promoted  # the manual step
    assert registry.champion_version(config, workdir) == decision.candidate


def test_a_failed_gate_keeps_the_champion_and_alerts_the_webhook(
    workdir: Workdir, training_config: FlywheelConfig, webhook
) -> None:
    url, received = webhook
    config = apply_overrides(
        training_config, {**QUIET, "registry.gates.min_roc_auc": 0.999, "alerts.webhook_url": url}
    )
    decision = retrain.retrain(config, workdir, force=True)
    assert decision.gate_passed is False and decision.promoted is None
    assert decision.champion == decision.champion_after == "1"
    (alert,) = received
    assert alert["kind"] == "gate_failed" and "failed the quality gate" in alert["text"]
    assert alert["text"].startswith("[flywheel churn]") and alert["details"]["pipeline_run_id"]
    logged = json.loads((workdir.reports / "alerts.jsonl").read_text().splitlines()[-1])
    assert logged == alert


def test_a_failure_mid_loop_leaves_champion_and_online_store_and_the_next_tick_retries(
    workdir: Workdir, training_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch, webhook
) -> None:
    url, received = webhook
    config = apply_overrides(training_config, {**QUIET, "alerts.webhook_url": url})
    online_before = tree_digest(workdir.feature_repo)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(loop.feature_ops, "build", disk_full)
    failed = loop.tick(config, workdir, simulate=True)
    assert not failed.ok and failed.failed_stage == "features" and "No space left" in failed.error
    assert tree_digest(workdir.feature_repo) == online_before
    assert registry.champion_version(config, workdir) == "1"
    assert [a["kind"] for a in received] == ["loop_failed"]

    monkeypatch.undo()
    retried = loop.tick(config, workdir)
    assert retried.ok, retried.error
    stages = dict(retried.stages)
    assert stages["features"].startswith(("1 ", "2 ", "3 ", "4 ", "5 "))  # the new batch's dates
    assert retried.decision is not None and not retried.decision.retrain
    assert tree_digest(workdir.feature_repo) != online_before  # newer features materialized
    assert registry.champion_version(config, workdir) == "1"


def test_the_loop_ingests_inbox_folders_and_sets_rejected_ones_aside(
    workdir: Workdir, training_config: FlywheelConfig, webhook
) -> None:
    url, received = webhook
    config = apply_overrides(training_config, {**QUIET, "alerts.webhook_url": url})
    bad = workdir.inbox / "bad-batch"
    bad.mkdir(parents=True)
    (bad / "orders.csv").write_text("order_id,user_id\nnot-a-number,1\n")
    lake_before = tree_digest(workdir.lake)
    result = loop.tick(config, workdir)
    assert not result.ok and result.failed_stage == "ingest"
    assert tree_digest(workdir.lake) == lake_before
    assert (workdir.inbox / ".rejected" / "bad-batch").exists() and not bad.exists()
    assert [a["kind"] for a in received] == ["batch_rejected"]


def test_the_cron_loop_ticks_at_each_scheduled_time(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    config = apply_overrides(training_config, QUIET)
    waits: list[float] = []
    ticks: list[loop.Tick] = []

    class Stop(Exception):
        pass

    def on_tick(tick: loop.Tick) -> None:
        ticks.append(tick)
        if len(ticks) == 2:
            raise Stop

    with pytest.raises(Stop):
        loop.run(config, workdir, cron="*/5 * * * *", sleep=waits.append, on_tick=on_tick)
    assert len(waits) == 2 and all(0 <= w <= 300 for w in waits)  # until the next 5-minute mark
    assert all(t.ok for t in ticks), [t.error for t in ticks]
    assert [stage for stage, _ in ticks[0].stages] == ["ingest", "features", "retrain", "publish"]


def test_loop_once_from_the_cli(workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path) -> None:
    import subprocess

    from tests.servers import flywheel_command

    config = apply_overrides(training_config, QUIET)
    result = subprocess.run(
        flywheel_command(config, workdir, tmp_path, "loop", "--once", "--simulate"),
        capture_output=True,
        text=True,
        timeout=600,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "ingest: simulated sim-" in result.stdout and "decision: no retrain" in result.stdout
    bad = subprocess.run(
        flywheel_command(config, workdir, tmp_path, "loop", "--cron", "every day"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a cron expression" in bad.stderr


def test_new_data_stops_firing_once_a_retrain_used_it_even_if_not_promoted(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    config = apply_overrides(training_config, {**QUIET, "retrain.min_new_batches": 1})
    ops.simulate(training_config, workdir, days=14, batch_id="two-weeks")
    assert fired(retrain.check(config, workdir)) == ["new_data"]
    # min_delta 1.0: the candidate trained on the new batch cannot be promoted; it stays challenger
    done = retrain.retrain(apply_overrides(config, {"registry.min_delta": 1.0}), workdir)
    assert done.retrain and done.gate_passed and done.promoted is False, done.error
    after = retrain.check(config, workdir)
    assert fired(after) == [] and "trained on every lake batch" in after.triggers[-1].detail


def test_ctrl_c_during_a_retrain_records_the_decision_as_cancelled(
    workdir: Workdir, training_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(retrain, "run_pipeline", interrupted)
    config = apply_overrides(training_config, QUIET)
    with pytest.raises(KeyboardInterrupt):
        retrain.retrain(config, workdir, force=True)
    client = registry.mlflow_client(config, workdir)
    experiment = client.get_experiment_by_name(f"{config.tracking.experiment}-retrain")
    (record,) = client.search_runs([experiment.experiment_id])
    assert record.info.status == "KILLED" and record.data.tags["flywheel.outcome"] == "retrain cancelled"
    assert registry.champion_version(config, workdir) == "1"


def test_the_first_champion_has_no_rollback_hint(
    featured_workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Regression: promoting a first champion once hinted `flywheel model rollback (back to vNone)`."""
    workdir = Workdir.at(tmp_path / "wd")
    shutil.copytree(featured_workdir.root, workdir.root)
    config = apply_overrides(training_config, {**QUIET, "training.tuning.method": "none"})
    decision = retrain.retrain(config, workdir)
    assert decision.promoted and decision.champion is None and decision.champion_after == "1"
    assert decision.rollback is None
