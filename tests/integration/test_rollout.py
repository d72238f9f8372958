"""Rollouts in the registry (:mod:`flywheel.rollout.state`) and the ``flywheel rollout`` commands: one
rollout at a time, started only for a version that passed its gate beside a champion, ended by
promotion (the champion alias moves, with the rollout as its reason) or abort; every decision is
recorded and alerted."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.features import snapshots
from flywheel.pipeline.context import StepContext
from flywheel.pipeline.steps import publish
from flywheel.registry import registry
from flywheel.registry.registry import RegistryError
from flywheel.retraining import loop
from flywheel.rollout import arms, state
from flywheel.rollout.stats import in_slice
from flywheel.serving.app import create_app
from flywheel.serving.predlog import read_log
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN, flywheel_command

ARM = "X-Flywheel-Arm"


@pytest.fixture
def two_versions(served_copy: Workdir, serving_config: FlywheelConfig, trained) -> Workdir:
    """The served copy (champion v1) with a second version registered: the challenger v2."""
    _, result = trained
    registration = registry.register(serving_config, served_copy, result.run_id, result.model_uri)
    assert registration.version == "2" and registration.gate_passed
    return served_copy


def _alerts(workdir: Workdir) -> list[dict]:
    lines = (workdir.reports / "alerts.jsonl").read_text().splitlines()
    return [a for a in map(json.loads, lines) if a["kind"] == "rollout"]


def test_a_canary_is_started_refused_twice_and_aborted(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    config, workdir = serving_config, two_versions
    with pytest.raises(RegistryError, match="unknown rollout mode 'blue-green'"):
        state.start(config, workdir, "blue-green")
    with pytest.raises(RegistryError, match="--percent 150"):
        state.start(config, workdir, "canary", percent=150)
    rollout = state.start(config, workdir, "canary", percent=20)  # the challenger alias by default
    assert (rollout.mode, rollout.challenger, rollout.champion, rollout.percent) == ("canary", "2", "1", 20.0)
    client = registry.mlflow_client(config, workdir)
    assert state.current(client, config.registry.model_name) == rollout  # every replica reads this
    with pytest.raises(RegistryError, match=f"rollout {rollout.id}: canary of v2 on 20 % .* is running"):
        state.start(config, workdir, "shadow")
    state.abort(config, workdir, "p99 over the limit")
    assert state.current(client, config.registry.model_name) is None
    assert registry.champion_version(config, workdir) == "1"
    recorded = state.events(client, config.registry.model_name)
    assert [(e["action"], e["id"], e["reason"]) for e in recorded] == [
        ("start", rollout.id, None),
        ("abort", rollout.id, "p99 over the limit"),
    ]
    assert [a["details"]["action"] for a in _alerts(workdir)] == ["start", "abort"]
    with pytest.raises(RegistryError, match="no rollout running"):
        state.abort(config, workdir)


def test_a_shadow_rollout_is_promoted_from_the_cli(
    two_versions: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    def flywheel(*args: str) -> subprocess.CompletedProcess:
        command = flywheel_command(serving_config, two_versions, tmp_path, "rollout", *args)
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )

    started = flywheel("start", "--mode", "shadow", "--version", "2")
    assert started.returncode == 0, started.stderr
    assert "shadow of v2 beside champion v1" in started.stdout
    shifted = flywheel("shift", "--mode", "canary")  # the configured share, the same rollout
    assert shifted.returncode == 0, shifted.stderr
    assert "shifted: rollout r" in shifted.stdout and "canary of v2 on 10 % of entities" in shifted.stdout
    grown = flywheel("shift", "--percent", "50")
    assert grown.returncode == 0 and "canary of v2 on 50 %" in grown.stdout
    same = flywheel("shift", "--percent", "50")
    assert same.returncode == 1 and "name another --mode or --percent" in same.stderr
    shown = flywheel("status")
    assert shown.returncode == 0 and "canary of v2" in shown.stdout and "shift" in shown.stdout
    promoted = flywheel("promote")
    assert promoted.returncode == 0 and "v2 is the champion (was v1)" in promoted.stdout
    assert registry.champion_version(serving_config, two_versions) == "2"
    client = registry.mlflow_client(serving_config, two_versions)
    move = registry.history(client, serving_config.registry.model_name)[-1]
    assert move["to"] == "2" and "rollout r" in move["reason"] and "(canary) promoted" in move["reason"]
    actions = [e["action"] for e in state.events(client, serving_config.registry.model_name)]
    assert actions == ["start", "shift", "shift", "promote"]
    again = flywheel("promote")
    assert again.returncode == 1 and "no rollout running" in again.stderr


def test_only_a_gated_version_beside_a_champion_is_rolled_out(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    config, workdir = serving_config, two_versions
    with pytest.raises(RegistryError, match="version 1 is the champion already"):
        state.start(config, workdir, "canary", version="1")
    with pytest.raises(RegistryError, match="has no version 9"):
        state.start(config, workdir, "canary", version="9")
    client = registry.mlflow_client(config, workdir)
    client.set_model_version_tag(config.registry.model_name, "2", "gate.passed", "false")
    with pytest.raises(RegistryError, match="version 2 failed its quality gate"):
        state.start(config, workdir, "canary", version="2")


def _customers(workdir: Workdir, n: int) -> list[int]:
    latest = pq.read_table(snapshots.snapshot_files(workdir)[-1])
    return latest.column("customer_id").to_pylist()[:n]


def test_a_canary_answers_its_sticky_slice_from_the_challenger(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    """The service follows the registry's rollout (here at once, through the admin reload the poller
    also runs): each entity gets the arm of the rollout's stable slice, every time and in batches; the
    X-Flywheel-Arm header forces one; each answer and log row names its arm and version."""
    customers = _customers(two_versions, 60)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(create_app(serving_config, two_versions)) as client:
        plain = client.post("/v1/predict", json={"customer_id": customers[0]}).json()
        assert "arm" not in plain and plain["model_version"] == "1"
        refused = client.post("/v1/predict", json={"customer_id": customers[0]}, headers={ARM: "challenger"})
        assert refused.status_code == 409 and "no challenger" in refused.json()["detail"]
        rollout = state.start(serving_config, two_versions, "canary", percent=30)
        assert client.post("/v1/admin/reload", headers=admin).status_code == 200
        answers = {c: client.post("/v1/predict", json={"customer_id": c}).json() for c in customers}
        expected = {c: "challenger" if in_slice(rollout.id, c, 30) else "champion" for c in customers}
        assert {c: a["arm"] for c, a in answers.items()} == expected and len(set(expected.values())) == 2
        assert all(a["model_version"] == ("2" if a["arm"] == "challenger" else "1") for a in answers.values())
        assert (
            client.post("/v1/predict", json={"customer_id": customers[0]}).json()["arm"]
            == expected[customers[0]]
        )
        batch = client.post("/v1/predict/batch", json={"customer_ids": customers[:10]}).json()["predictions"]
        assert [p["arm"] for p in batch] == [expected[c] for c in customers[:10]]
        forced = [
            client.post("/v1/predict", json={"customer_id": c}, headers={ARM: "challenger"}).json()
            for c in customers[:5]
        ]
        assert {(f["arm"], f["model_version"]) for f in forced} == {("challenger", "2")}
        state.abort(serving_config, two_versions, "done")
        client.post("/v1/admin/reload", headers=admin)
        assert "arm" not in client.post("/v1/predict", json={"customer_id": customers[0]}).json()
    logged = read_log(two_versions.predictions, columns=("request_id", "model_version", "arm"))
    by_id = {row["request_id"]: row for row in logged}
    for answer in answers.values():
        assert (by_id[answer["request_id"]]["arm"], by_id[answer["request_id"]]["model_version"]) == (
            answer["arm"],
            answer["model_version"],
        )
    assert by_id[plain["request_id"]]["arm"] is None


def test_a_shadow_challenger_never_changes_or_fails_a_response(
    two_versions: Workdir, serving_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = _customers(two_versions, 20)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(create_app(serving_config, two_versions)) as client:
        plain = [client.post("/v1/predict", json={"customer_id": c}).json() for c in customers]
        state.start(serving_config, two_versions, "shadow")
        client.post("/v1/admin/reload", headers=admin)
        shadowed = [client.post("/v1/predict", json={"customer_id": c}).json() for c in customers]
        challenger = client.app.state.flywheel.challenger
        assert challenger.version == "2"

        def broken(records):
            raise RuntimeError("the challenger broke")

        monkeypatch.setattr(challenger.model, "predict_records", broken)
        failing = client.post("/v1/predict", json={"customer_id": customers[0]})
    assert failing.status_code == 200 and failing.json()["model_version"] == "1"
    for before, after in zip(plain, shadowed, strict=True):
        assert after["arm"] == "champion" and after["model_version"] == "1"
        assert {k: v for k, v in after.items() if k not in ("request_id", "arm")} == {
            k: v for k, v in before.items() if k != "request_id"
        }
    shadow_rows = [r for r in read_log(two_versions.predictions, shadow=True) if r["arm"] == "shadow"]
    assert sorted(r["request_id"] for r in shadow_rows) == sorted(a["request_id"] for a in shadowed)
    assert {r["model_version"] for r in shadow_rows} == {"2"}
    assert not [r for r in read_log(two_versions.predictions) if r["arm"] == "shadow"]  # answered no one


def test_an_unreadable_registry_is_not_an_ended_rollout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (review): every MlflowException read as "no rollout", so a registry that was down
    made the service drop its challenger and flip the canary's entities to the champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tests.servers import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    down = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with pytest.raises(MlflowException):
        state.current(down, "churn-model")


def test_a_rollout_tag_the_service_cannot_read_keeps_it_serving(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    """Regression (review): a hand-edited tag raised in the poller, which died (no more champion
    reloads either); now the service logs it and keeps its arms."""
    customer = _customers(two_versions, 1)[0]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    client = registry.mlflow_client(serving_config, two_versions)
    with TestClient(create_app(serving_config, two_versions)) as service:
        client.set_registered_model_tag(serving_config.registry.model_name, state.TAG, '{"mode": "canary"}')
        with pytest.raises(RegistryError, match="not a rollout this release can read"):
            state.current(client, serving_config.registry.model_name)  # `rollout status`: one clear line
        assert service.post("/v1/admin/reload", headers=admin).status_code == 200
        answer = service.post("/v1/predict", json={"customer_id": customer})
        assert answer.status_code == 200 and "arm" not in answer.json()
        client.delete_registered_model_tag(serving_config.registry.model_name, state.TAG)
        state.start(serving_config, two_versions, "canary", percent=100)
        service.post("/v1/admin/reload", headers=admin)
        assert service.post("/v1/predict", json={"customer_id": customer}).json()["arm"] == "challenger"


def _reload(client: TestClient) -> None:
    assert (
        client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    )


def test_outcomes_are_joined_per_arm_into_the_ab_verdict(
    two_versions: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    """Outcomes posted by request id reach each arm's figures; `rollout status` shows the arms, the
    z-test and the sample size needed; bad outcomes are refused naming the field."""
    customers = _customers(two_versions, 120)
    with TestClient(create_app(serving_config, two_versions)) as client:
        rollout = state.start(serving_config, two_versions, "ab", percent=50)
        _reload(client)
        answers = [client.post("/v1/predict", json={"customer_id": c}).json() for c in customers]
        converted = [  # the challenger's answers convert twice as often
            {"request_id": a["request_id"], "outcome": 1}
            for k, a in enumerate(answers)
            if k % (3 if a["arm"] == "challenger" else 6) == 0
        ]
        posted = client.post("/v1/outcomes", json={"outcomes": converted})
        assert posted.status_code == 200 and posted.json() == {"accepted": len(converted)}
        bad = client.post("/v1/outcomes", json={"outcomes": [{"request_id": "x", "outcome": 2}]})
        assert bad.status_code == 422
        assert {p["field"] for p in bad.json()["detail"]} == {"outcomes.0.request_id", "outcomes.0.outcome"}
        for loose in (True, "1", 0.5):  # what lax validation took for 1 (fuzzing found it)
            body = {"outcomes": [{"request_id": "0" * 32, "outcome": loose}]}
            assert client.post("/v1/outcomes", json=body).status_code == 422, loose
        too_many = [{"request_id": "0" * 32, "outcome": 1}] * 601
        assert client.post("/v1/outcomes", json={"outcomes": too_many}).status_code == 413
    served = {arm: [a for a in answers if a["arm"] == arm] for arm in ("champion", "challenger")}
    figures = arms.ArmCounter(two_versions.predictions, rollout).update()
    for arm, answered in served.items():
        assert figures[arm].predictions == len(answered) > 0
        ids = {a["request_id"] for a in answered}
        assert figures[arm].successes == sum(1 for c in converted if c["request_id"] in ids)
    shown = subprocess.run(
        flywheel_command(serving_config, two_versions, tmp_path, "rollout", "status"),
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr
    result = arms.compare(figures, serving_config.rollout)
    assert f"lift {result.lift:+.2%}" in shown.stdout and f"p {result.p_value:.4f}" in shown.stdout
    assert f"{result.required_per_arm:,} predictions per arm" in shown.stdout
    assert f"{figures['challenger'].predictions:,}" in shown.stdout


def test_a_bandit_shifts_traffic_to_the_arm_that_converts(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    customers = _customers(two_versions, 200)
    with TestClient(create_app(serving_config, two_versions)) as client:
        state.start(serving_config, two_versions, "bandit")
        _reload(client)
        service = client.app.state.flywheel
        assert service.shares == pytest.approx({"champion": 0.5, "challenger": 0.5}, abs=0.05)  # even
        answers = [client.post("/v1/predict", json={"customer_id": c}).json() for c in customers]
        wins = [{"request_id": a["request_id"], "outcome": 1} for a in answers if a["arm"] == "challenger"]
        client.post("/v1/outcomes", json={"outcomes": wins})
        time.sleep(0.5)  # the log's writer flushes every 0.1 s
        _reload(client)
        floor = serving_config.rollout.floor
        assert service.shares == pytest.approx({"champion": floor, "challenger": 1 - floor}, abs=0.01)
        later = [client.post("/v1/predict", json={"customer_id": c}).json()["arm"] for c in customers]
    assert later.count("challenger") > 0.8 * len(later)


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ({"rollout.guards.max_p99_ms": 0.0001}, "challenger p99 scoring latency"),
        (
            {"rollout.guards.max_prediction_psi": 1e-9, "rollout.guards.min_drift_scores": 30},
            "prediction drift",
        ),
        ({"rollout.guards.max_error_rate": 0.05}, "error rate 100.0% of the challenger's"),
    ],
)
def test_a_guard_aborts_the_rollout_and_every_request_is_answered(
    two_versions: Workdir,
    serving_config: FlywheelConfig,
    monkeypatch: pytest.MonkeyPatch,
    limit: dict,
    reason: str,
) -> None:
    config = apply_overrides(serving_config, {"rollout.guards.min_predictions": 30, **limit})
    customers = _customers(two_versions, 160)  # some 80 per arm
    with TestClient(create_app(config, two_versions)) as client:
        rollout = state.start(config, two_versions, "canary", percent=50)
        _reload(client)
        if "error rate" in reason:

            def broken(records):
                raise RuntimeError("the challenger broke")

            monkeypatch.setattr(client.app.state.flywheel.challenger.model, "predict_records", broken)
        answers = [client.post("/v1/predict", json={"customer_id": c}) for c in customers]
        _reload(client)
        after = client.post("/v1/predict", json={"customer_id": customers[0]}).json()
    assert all(a.status_code == 200 for a in answers)
    if "error rate" in reason:  # the champion answered the challenger's entities
        assert {a.json()["model_version"] for a in answers} == {"1"}
    assert "arm" not in after and after["model_version"] == "1"
    registry_client = registry.mlflow_client(config, two_versions)
    assert state.current(registry_client, config.registry.model_name) is None
    last = state.events(registry_client, config.registry.model_name)[-1]
    assert last["action"] == "abort" and last["id"] == rollout.id
    assert last["reason"].startswith("guard: ") and reason in last["reason"]
    assert _alerts(two_versions)[-1]["details"]["reason"] == last["reason"]


def test_the_loop_takes_its_rollout_through_each_stage_to_promotion(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    """A rollout the loop started (``rollout.stages``) moves on once a stage has run long enough with
    enough challenger predictions: shadow → canary → champion; a hand-started one is left alone."""
    config = apply_overrides(serving_config, {"rollout.stage_minutes": 0.001, "rollout.stage_predictions": 5})
    customers = _customers(two_versions, 20)
    by_hand = state.start(config, two_versions, "canary")
    time.sleep(0.1)
    assert loop._advance_rollout(config, two_versions) == (None, None)
    state.abort(config, two_versions)
    state.start(config, two_versions, "shadow", plan=("canary",), automatic=True)
    waiting, running = loop._advance_rollout(config, two_versions)
    assert "0 challenger predictions in this stage" in waiting and "shadow of v2" in running
    with TestClient(create_app(config, two_versions)) as client:
        _reload(client)
        for c in customers:
            client.post("/v1/predict", json={"customer_id": c})
    time.sleep(0.1)
    assert loop._advance_rollout(config, two_versions)[0] == "shifted to canary"
    registry_client = registry.mlflow_client(config, two_versions)
    canary = state.current(registry_client, config.registry.model_name)
    assert (canary.mode, canary.percent, canary.plan) == ("canary", config.rollout.percent, ())
    with TestClient(create_app(config, two_versions)) as client:
        _reload(client)
        for c in customers * 3:
            client.post("/v1/predict", json={"customer_id": c}, headers={ARM: "challenger"})
    time.sleep(0.1)
    assert loop._advance_rollout(config, two_versions) == ("promoted v2 after canary", None)
    assert registry.champion_version(config, two_versions) == "2"
    actions = [e["action"] for e in state.events(registry_client, config.registry.model_name)]
    assert actions[-3:] == ["start", "shift", "promote"] and by_hand.id != canary.id


def test_a_winning_retrain_starts_the_loops_rollout_instead_of_promoting(
    two_versions: Workdir, serving_config: FlywheelConfig
) -> None:
    """The pipeline's publish step with ``rollout.stages``: the winner (v2) starts a shadow rollout
    planned on to canary, superseding the loop's running one, and the champion stays; a rollout
    started by hand is never cut short; without stages the winner is promoted at once."""
    config = apply_overrides(serving_config, {"rollout.stages": ["shadow", "canary"]})
    by_hand = state.start(config, two_versions, "ab")
    kept = publish.run(StepContext(config, two_versions), "2", "true", "better", "1")
    assert (
        kept["promoted"] == "false" and kept["champion"] == "1" and "(started by hand) runs" in kept["reason"]
    )
    client = registry.mlflow_client(config, two_versions)
    assert state.current(client, config.registry.model_name) == by_hand  # the user's trial goes on
    state.abort(config, two_versions)
    earlier = state.start(config, two_versions, "canary", automatic=True)
    context = StepContext(config, two_versions)
    outputs = publish.run(context, "2", "true", "ROC-AUC +0.01 vs champion v1", "1")
    assert outputs["promoted"] == "false" and outputs["champion"] == "1"
    rollout = state.current(client, config.registry.model_name)
    assert outputs["rollout"] == rollout.id != earlier.id
    assert (rollout.mode, rollout.plan, rollout.automatic, rollout.challenger) == (
        "shadow",
        ("canary",),
        True,
        "2",
    )
    assert "rolling out before it becomes champion" in outputs["reason"]
    superseded = [e for e in state.events(client, config.registry.model_name) if e["action"] == "abort"]
    assert [(e["id"], e["reason"]) for e in superseded][-1] == (earlier.id, "superseded by v2")
    state.abort(config, two_versions)
    at_once = publish.run(StepContext(serving_config, two_versions), "2", "true", "better", "1")
    assert at_once["promoted"] == "true" and at_once["rollout"] == "" and at_once["champion"] == "2"


def test_a_shadows_scoring_is_not_counted_in_the_request_latency(
    two_versions: Workdir, serving_config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the middleware timed a request to the end of the app call, which includes the
    background tasks run after the response: a slow shadow showed as slow answers."""
    customers = _customers(two_versions, 5)
    with TestClient(create_app(serving_config, two_versions)) as client:
        state.start(serving_config, two_versions, "shadow")
        _reload(client)
        challenger = client.app.state.flywheel.challenger.model
        scoring = challenger.predict_records

        def slow(records):
            time.sleep(0.3)
            return scoring(records)

        monkeypatch.setattr(challenger, "predict_records", slow)
        for c in customers:
            assert client.post("/v1/predict", json={"customer_id": c}).status_code == 200
        registry_ = client.app.state.flywheel.metrics.registry
        took = registry_.get_sample_value("flywheel_request_seconds_sum", {"endpoint": "/v1/predict"})
        shadowed = registry_.get_sample_value("flywheel_arm_scoring_seconds_sum", {"arm": "shadow"})
    assert shadowed >= 0.3 * len(customers)  # the shadow did take its time
    assert took < 0.3  # five answers, none waiting for it
