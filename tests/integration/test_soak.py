"""A 30-second soak of the real service: the driver of ``benchmarks/bench_soak.py`` (its 10-minute run
is a benchmark, too long for the suite) under bounded wrk load while a canary is started, shifted
and aborted, the champion is swapped and a shadow rollout comes and goes; then SIGTERM. No request
fails, every answered prediction is in the log, and each phase is served by the arms its state says.
Timings and RSS are reported, not asserted (30 s of RSS says little about a leak)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.registry import registry
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN, ensure_apt_package, service

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_soak.py"


def bench_soak() -> ModuleType:
    """``benchmarks/bench_soak.py`` as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("bench_soak", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_a_30_second_soak_through_a_rollout_and_a_champion_swap(
    served_copy: Workdir, serving_config: FlywheelConfig, trained, tmp_path: Path
) -> None:
    ensure_apt_package("wrk", "wrk")
    soak = bench_soak()
    config = apply_overrides(
        serving_config,
        {"serving.poll_seconds": 1, "rollout.guards.min_predictions": soak.GUARDS_OFF},
    )
    _, result = trained  # registered again: v2, the version rolled out and then swapped in
    assert registry.register(config, served_copy, result.run_id, result.model_uri).gate_passed
    folder = tmp_path / "soak"
    folder.mkdir()
    since = datetime.now(UTC)
    with service(served_copy, config, tmp_path, log=tmp_path / "server.log") as (base, process):
        report = soak.soak(
            config,
            served_copy,
            base,
            process,
            folder,
            seconds=30,
            connections=4,
            rate=200,
            token=ADMIN_TOKEN,
            since=since,
            rss_every=1,
        )
    soak.print_report(report, "30-second soak")  # shown when the test fails (or with -s)
    assert report.requests > 100 and report.failed == 0
    stop = report.stop  # SIGTERM under load: every answer, before and during the stop, is logged
    assert stop.exit_code == 0
    assert report.unlogged == 0 and report.duplicates == 0
    assert report.logged == stop.server_ok + len(stop.phase.answered)
    assert report.events == ["start", "shift", "abort", "start", "abort"]
    assert registry.champion_version(config, served_copy) == "2"
    served = {phase.step.name: set(phase.settled) for phase in report.phases}
    assert served["warm-up"] == served["aborted"] == {("1", None)}
    assert served["canary 10 %"] == served["canary 50 %"] == {("1", "champion"), ("2", "challenger")}
    assert served["champion swapped"] == served["shadow aborted"] == {("2", None)}
    assert served["shadow"] == {("2", "champion")}
    assert report.shadow_rows > 0 and report.shadow_missing == 0
    assert "Traceback" not in (tmp_path / "server.log").read_text()
