"""Publishing is the last act of a successful run: a run that fails or is cancelled at any step leaves
the lake, the served online store, the champion alias and the prediction log as they were."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.features import online
from flywheel.pipeline import runs
from flywheel.pipeline.dag import PIPELINE, STEPS
from flywheel.pipeline.runner import run_pipeline
from flywheel.registry import registry
from flywheel.serving.predlog import PredictionLog, utc_iso
from flywheel.workdir import Workdir
from tests.conftest import tree_digest


def _rows_digest(path: Path) -> str:
    """Every row of every table of a SQLite file (WAL included), in a stable order."""
    digest = hashlib.sha256()
    with contextlib.closing(sqlite3.connect(path)) as con:
        tables = [
            r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        for table in tables:
            digest.update(table.encode())
            for row in con.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2, 3'):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def served_state(config: FlywheelConfig, workdir: Workdir) -> dict[str, str | None]:
    data = workdir.feature_repo / "data"
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    return {
        "lake": tree_digest(workdir.lake),
        "online store": _rows_digest(data / "online_store.db"),
        "watermark": online.watermark_path(workdir).read_text(),
        "feast registry": hashlib.sha256((data / "registry.db").read_bytes()).hexdigest(),
        "champion": registry.alias_version(client, name, registry.CHAMPION),
        "champion moves": str([m for m in registry.history(client, name) if m["alias"] == registry.CHAMPION]),
        "prediction log": _rows_digest(workdir.prediction_log),
    }


@pytest.fixture
def config(training_config: FlywheelConfig) -> FlywheelConfig:
    return apply_overrides(training_config, {"training.tuning.method": "none"})


@pytest.fixture
def workdir(served_workdir: Workdir, tmp_path: Path, config: FlywheelConfig) -> Workdir:
    """A serving workdir (champion, online store, a prediction log) and a new batch to publish."""
    target = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, target.root)
    ops.simulate(config, target, days=42, drift="price_shock")
    log = PredictionLog(target.prediction_log, flush_seconds=0.05)
    now = utc_iso(datetime.now(UTC))
    for i in range(5):
        log.append(f"r{i}", now, i + 1, "1", 0.1 * i, {"orders_30d": i}, "predict", None)
    log.close()
    return target


def _fails_after_its_work(real, error: BaseException):
    def step(ctx, **inputs):
        real(ctx, **inputs)
        raise error

    return step


def test_a_run_failing_at_any_step_changes_nothing_served(
    workdir: Workdir, config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step in turn is cancelled (Ctrl-C), then fails, after doing its work (``publish`` as it
    starts to materialize); the same run is resumed each time, so each step runs again."""
    before = served_state(config, workdir)
    run_id = None
    for step in PIPELINE:
        for cancelled in (True, False):
            error = KeyboardInterrupt() if cancelled else RuntimeError(f"injected in {step.name}")
            with monkeypatch.context() as patch:
                if step.name == "publish":
                    patch.setattr(online, "materialize", _raise(error))
                else:
                    patch.setattr(STEPS[step.name].module, "run", _fails_after_its_work(step.run, error))
                if cancelled:
                    with pytest.raises(KeyboardInterrupt):
                        run_pipeline(config, workdir, resume=run_id)
                    record = runs.Store(config, workdir).list(1)[0] if run_id is None else None
                    record = record or runs.Store(config, workdir).get(run_id)
                else:
                    record = run_pipeline(config, workdir, resume=run_id)
            run_id = record.run_id
            statuses = {s.name: s.status for s in record.steps}
            expected = runs.CANCELLED if cancelled else runs.FAILED
            assert record.status == expected and statuses[step.name] == expected, (step.name, record.error)
            assert served_state(config, workdir) == before, f"{step.name} {expected} changed what is served"

    finished = run_pipeline(config, workdir, resume=run_id)  # the same run, nothing injected: it publishes
    assert finished.status == runs.SUCCEEDED
    after = served_state(config, workdir)
    assert after["online store"] != before["online store"] and after["watermark"] != before["watermark"]
    assert after["lake"] == before["lake"] and after["prediction log"] == before["prediction log"]


def _raise(error: BaseException):
    def failing(*args, **kwargs):
        raise error

    return failing


def test_publish_refuses_a_decision_the_champion_moved_under(
    workdir: Workdir, config: FlywheelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under KFP or Airflow each step locks the workdir on its own: a rollback or another run can move
    the champion between ``promote`` and ``publish``; the stale decision publishes nothing."""
    real = STEPS["promote"].run
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name

    def promote_then_someone_moves_the_champion(ctx, **inputs):
        outputs = real(ctx, **inputs)
        registry.move_alias(client, name, registry.CHAMPION, inputs["version"], "another run promoted it")
        return outputs

    monkeypatch.setattr(STEPS["promote"].module, "run", promote_then_someone_moves_the_champion)
    before = served_state(config, workdir)
    record = run_pipeline(config, workdir)
    publish = next(s for s in record.steps if s.name == "publish")
    assert record.status == runs.FAILED and "nothing published" in publish.error
    after = served_state(config, workdir)
    assert {k: v for k, v in after.items() if "champion" not in k} == {
        k: v for k, v in before.items() if "champion" not in k
    }
