"""What the estimator reads from the registry: each version's threshold and calibration even when its
test predictions cannot be read, and no failure of the tracking store ever fails a report."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from flywheel.config import default_config
from flywheel.monitoring import estimates, performance
from flywheel.registry import registry
from flywheel.training import tracking
from flywheel.training.train import EVAL_FOLDER, PREDICTIONS_FILE
from flywheel.workdir import Workdir


def _version(config, workdir: Workdir, tmp_path: Path, test_rows: int | None) -> str:
    """A registered version whose run says threshold 0.31, isotonic; with ``test_rows`` its eval step's
    test predictions (labels and probabilities) are logged too."""
    tracking.setup(config, workdir)
    with mlflow.start_run() as run:
        mlflow.log_params({"threshold": 0.31, "calibration": "isotonic"})
        if test_rows:
            rng = np.random.default_rng(0)
            p = rng.random(test_rows)
            folder = tmp_path / EVAL_FOLDER
            folder.mkdir()
            frame = pd.DataFrame({"label": (rng.random(test_rows) < p).astype(int), "probability": p})
            frame.to_parquet(folder / PREDICTIONS_FILE)
            mlflow.log_artifacts(str(folder), EVAL_FOLDER)
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    client.create_registered_model(name)
    return str(client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version)


@pytest.mark.parametrize("test_rows", [None, 10, 500])
def test_a_versions_threshold_and_calibration_survive_unreadable_test_predictions(
    tmp_path: Path, test_rows: int | None
) -> None:
    """No eval artifact, or one too small for a reference: no band, but the version's own threshold and
    calibration (not 0.5 and "uncalibrated") and no exception."""
    config, workdir = default_config(), Workdir.at(tmp_path / "wd")
    version = _version(config, workdir, tmp_path, test_rows)
    found = estimates.references(config, workdir, [version])[version]
    assert (found.threshold, found.calibrated) == (0.31, True)
    assert (found.reference is not None) is (test_rows == 500)


def test_no_version_reads_no_tracking_store(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    assert estimates.references(default_config(), workdir, []) == {}
    assert not workdir.mlflow_db.exists()


def test_an_unreachable_tracking_server_leaves_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    config = default_config(tracking={"uri": "http://127.0.0.1:9"})
    found = estimates.references(config, Workdir.at(tmp_path / "wd"), ["1"])
    assert found == {"1": estimates.VersionReference()}


def test_a_concept_shift_is_alerted_once_per_period_with_the_band_it_was_judged_by(tmp_path: Path) -> None:
    workdir = Workdir.at(tmp_path / "wd")
    config = default_config()
    period = performance.Period("2024-03-04", "2024-03-11", 120, 120, 100, "partial", roc_auc=0.6)
    period.estimated, period.band = {"roc_auc": 0.8}, {"roc_auc": [0.75, 0.85]}  # all 120 predictions
    period.estimated_labelled, period.band_labelled = {"roc_auc": 0.78}, {"roc_auc": [0.72, 0.84]}
    period.estimation_error, period.concept_shift = {"roc_auc": 0.6 - 0.78}, ["roc_auc"]
    assert estimates.alert_concept_shift(config, workdir, [period]) == 1
    assert estimates.alert_concept_shift(config, workdir, [period]) == 0  # the same shift, already said
    workdir.alerts_log.open("a").write('[1, 2]\n{"kind": "concept_shift", "details": "x"}\n')  # not alerts
    longer = performance.Period("2024-03-04", "2024-03-18", 240, 240, 200, "partial", roc_auc=0.6)
    longer.__dict__.update({k: getattr(period, k) for k in ("estimated_labelled", "band_labelled")})
    longer.estimation_error, longer.concept_shift = period.estimation_error, ["roc_auc"]
    assert estimates.alert_concept_shift(config, workdir, [period, longer]) == 1  # another period length
    texts = [a["text"] for a in _alerts(workdir)]
    assert (
        "roc_auc realized 0.600, expected 0.780 on the 100 labelled predictions (band 0.720–0.840)"
        in texts[0]
    )


def _alerts(workdir: Workdir) -> list[dict]:
    import json

    out = []
    for line in workdir.alerts_log.read_text().splitlines():
        found = json.loads(line)
        if isinstance(found, dict) and found.get("kind") == "concept_shift" and "text" in found:
            out.append(found)
    return out
