"""Rollouts in the registry (:mod:`flywheel.rollout.state`) and the ``flywheel rollout`` commands: one
rollout at a time, started only for a version that passed its gate beside a champion, ended by
promotion (the champion alias moves, with the rollout as its reason) or abort; every decision is
recorded and alerted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig
from flywheel.registry import registry
from flywheel.registry.registry import RegistryError
from flywheel.rollout import state
from flywheel.workdir import Workdir
from tests.servers import flywheel_command


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
    shown = flywheel("status")
    assert shown.returncode == 0 and "shadow of v2" in shown.stdout and "start" in shown.stdout
    promoted = flywheel("promote")
    assert promoted.returncode == 0 and "v2 is the champion (was v1)" in promoted.stdout
    assert registry.champion_version(serving_config, two_versions) == "2"
    client = registry.mlflow_client(serving_config, two_versions)
    move = registry.history(client, serving_config.registry.model_name)[-1]
    assert move["to"] == "2" and "rollout r" in move["reason"] and "(shadow) promoted" in move["reason"]
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
