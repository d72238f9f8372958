"""``flywheel demo`` closes the loop on data: drift, a retrain whose challenger wins under the registry's
own rule, publishing, the running service's hot swap, and a rollback — with each stage's seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel import demo
from flywheel.config import default_config
from flywheel.registry import registry
from flywheel.workdir import Workdir


@pytest.mark.slow
def test_the_demo_closes_the_loop(tmp_path: Path) -> None:
    config = demo.demo_config(default_config())
    workdir = Workdir.at(tmp_path / "wd")
    summary = demo.run(config, workdir)

    decision = summary.tick.decision
    fired = {t.name for t in decision.triggers if t.fired}
    assert "drift" in fired and decision.retrain and decision.published
    assert decision.promoted, decision.promotion_reason  # on data: delta ≥ min_delta, CI above 0
    challenger, first = decision.champion_after, summary.first_champion
    assert challenger != first and decision.candidate == challenger
    assert {p["model_version"] for p in summary.predictions} == {first}
    assert {p["model_version"] for p in summary.after_promotion} == {challenger}  # the hot swap
    assert {p["model_version"] for p in summary.after_rollback} == {first}  # and back
    assert registry.champion_version(config, workdir) == first == summary.champion

    names = [name for name, _, _ in summary.stages if not name.startswith("  ")]
    assert names[:3] == ["generate", "features", "pipeline"]
    assert names[-2:] == ["hot swap", "rollback"]
    assert [n for n in names if n.startswith("loop: ")] == [
        "loop: ingest",
        "loop: features",
        "loop: retrain",
        "loop: publish",
    ]
    assert all(seconds >= 0 for _, _, seconds in summary.stages) and summary.seconds > 0

    # the pending weeks had estimates before their labels; the loop's batch then revealed them
    assert "labels landed" in names
    before, after = (
        json.loads(path.read_text()) for path in sorted(workdir.reports.glob("performance-*.json"))
    )
    pending = {
        p["start"]: p for p in before["periods"] if p["status"] == "pending" and p["predictions"] >= 100
    }
    assert len(pending) >= 5 and all(
        p["roc_auc"] is None and "roc_auc" in p["estimated"] for p in pending.values()
    )
    landed = {p["start"]: p for p in after["periods"] if p["start"] in pending}
    assert landed.keys() == pending.keys()
    for start, period in landed.items():
        assert period["status"] == "observed" and period["roc_auc"] is not None, start
        assert period["estimated"]["roc_auc"] == pytest.approx(pending[start]["estimated"]["roc_auc"])
        assert period["estimation_error"]["roc_auc"] == pytest.approx(
            period["roc_auc"] - period["estimated"]["roc_auc"]
        )
        assert abs(period["estimation_error"]["roc_auc"]) < 0.15, (start, period)


@pytest.mark.slow
def test_the_bank_demo_runs_the_loop_for_its_use_case(tmp_path: Path) -> None:
    """`flywheel --config configs/bank.yaml demo`: the same stages on generated campaigns, answering
    with the bank's names; the month with a rate cut drifts and retrains (promotion is the data's
    call)."""
    config = demo.demo_config(default_config("bank"))
    workdir = Workdir.at(tmp_path / "wd")
    summary = demo.run(config, workdir)
    assert summary.first_champion is not None and summary.predictions
    assert {"contact_id", "subscribe_probability", "propensity_band"} <= set(summary.predictions[0])
    decision = summary.tick.decision
    assert decision.retrain and decision.pipeline_status == "SUCCEEDED", decision.reasons
    names = [name for name, _, _ in summary.stages if not name.startswith("  ")]
    assert names[:6] == ["generate", "features", "pipeline", "skew check", "serve", "traffic"]


@pytest.mark.slow
def test_the_demo_runs_on_an_iceberg_lake(tmp_path: Path) -> None:
    """`--set lake.format=iceberg`: the same loop on Iceberg tables, each batch a snapshot per table."""
    from flywheel.config import apply_overrides
    from flywheel.data.lake import Lake

    config = apply_overrides(demo.demo_config(default_config()), {"lake.format": "iceberg"})
    workdir = Workdir.at(tmp_path / "wd")
    summary = demo.run(config, workdir)
    decision = summary.tick.decision
    assert decision.retrain and decision.pipeline_status == "SUCCEEDED", decision.reasons
    assert {p["model_version"] for p in summary.after_rollback} == {summary.first_champion}
    lake = Lake(workdir, config.spec)
    assert lake.format == "iceberg" and len(lake.batches()) == 2
    orders = [s["batch_id"] for s in lake.iceberg().snapshots("orders")]
    assert orders == [b["batch_id"] for b in lake.batches()]
