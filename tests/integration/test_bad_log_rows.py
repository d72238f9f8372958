"""Issue 11, item 2: bad rows in the prediction log are counted and skipped by every reader — drift
from the log, delayed-label performance, the retrain decision and a loop tick — never fatal."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig, apply_overrides, default_config
from flywheel.features.snapshots import CREATED_COLUMN, TIMESTAMP_COLUMN
from flywheel.monitoring import monitor, performance
from flywheel.retraining import loop, retrain
from flywheel.serving.predlog import PredictionLog, utc_iso
from flywheel.workdir import Workdir

ENTITY = "customer_id"
QUIET = {"retrain.on_drift": False, "retrain.schedule_days": None, "retrain.min_new_batches": None}
GOOD_ROWS = 60
# (features JSON, churn_probability, as_of): each spoils one thing a reader parses
BAD_ROWS = [
    ("{}", 0.5, "9999-12-31T23:59:59Z"),  # the row: 200 from /v1/score, then every reader failed
    ("{}", 0.5, "not a time"),
    ("not json", 0.5, None),
    ("[1, 2]", 0.5, None),
    ('{"orders_30d": Infinity}', 0.5, None),
    ('{"orders_30d": {"a": 1}}', 0.5, None),
    ("{}", float("inf"), None),
    ("{}", -0.5, None),
]


@pytest.fixture
def workdir(served_workdir: Workdir, tmp_path: Path) -> Workdir:
    """A copy of the served workdir whose log holds good traffic on the newest snapshot and bad rows."""
    target = Workdir.at(tmp_path / "wd")
    shutil.copytree(served_workdir.root, target.root)
    day, frame = monitor.snapshot_frame(default_config(), target)
    now = utc_iso(datetime.now(UTC))
    log = PredictionLog(target.predictions / "predictions.db", flush_seconds=0.05)
    for i, row in enumerate(frame.head(GOOD_ROWS).to_dict("records")):
        features = {k: v for k, v in row.items() if k not in (ENTITY, TIMESTAMP_COLUMN, CREATED_COLUMN)}
        as_of = utc_iso(row[TIMESTAMP_COLUMN].to_pydatetime())
        log.append(f"r{i}", now, int(row[ENTITY]), "1", 0.3, features, "score", as_of)
    log.close()
    with sqlite3.connect(target.predictions / "predictions.db") as con:
        con.executemany(
            "INSERT INTO predictions (request_id, predicted_at, entity_id, model_version, score, features, "
            "endpoint, as_of) VALUES (?, ?, ?, '1', ?, ?, 'score', ?)",
            [(f"bad{i}", now, 1, p, f, a) for i, (f, p, a) in enumerate(BAD_ROWS)],
        )
        con.execute(  # a customer id SQLite kept as text
            "INSERT INTO predictions (request_id, predicted_at, entity_id, model_version, score, features, "
            "endpoint, as_of) VALUES ('bad-id', ?, 'x1', '1', 0.5, '{}', 'score', ?)",
            (now, day),
        )
    return target


def test_drift_from_the_log_skips_and_counts_bad_rows(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    report, meta, path = monitor.drift(training_config, workdir, source="log")
    # features not an object of finite scalars (4), probability outside [0, 1] (2); bad as_of and
    # customer ids do not matter to drift, whose rows need only features and a probability
    assert meta["skipped_rows"] == 6 and report.current_rows == GOOD_ROWS + 3
    assert json.loads(path.read_text())["skipped_rows"] == 6
    assert "6 unreadable prediction-log rows were skipped" in path.with_suffix(".html").read_text()


def test_performance_retrain_check_and_a_loop_tick_survive_bad_rows(
    workdir: Workdir, training_config: FlywheelConfig
) -> None:
    config = apply_overrides(training_config, QUIET)
    report = performance.evaluate(config, workdir)
    assert report.skipped == {"as_of": 2, "entity_id": 1, "score": 2}
    assert report.predictions == GOOD_ROWS + 4  # the bad-feature rows are fine predictions here
    decision = retrain.check(config, workdir, check_only=True)
    (trigger,) = [t for t in decision.triggers if t.name == "performance"]
    assert "labelled predictions" in trigger.detail  # evaluated, not an error
    tick = loop.tick(config, workdir)
    assert tick.failed_stage is None and tick.error is None, tick.error
    assert tick.decision is not None and not tick.decision.retrain


def test_the_cli_reports_the_skipped_rows_and_exits_cleanly(
    workdir: Workdir, training_config: FlywheelConfig, tmp_path: Path
) -> None:
    import subprocess

    from tests.servers import flywheel_command

    run = subprocess.run(
        flywheel_command(training_config, workdir, tmp_path, "monitor", "performance"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "5 unreadable prediction-log rows skipped" in run.stdout
    assert "2 with a bad as_of" in run.stdout and "Traceback" not in run.stderr
