"""Delayed-label performance on a hand-made lake and prediction log with known answers."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from flywheel.config import default_config
from flywheel.monitoring import estimation, performance
from flywheel.serving.predlog import PredictionLog, utc_iso
from flywheel.workdir import Workdir
from tests.tiny_lake import DAY, Order, T, commit_tiny_lake

ORDERS = [
    Order(1, T - 10 * DAY),
    Order(1, T + 20 * DAY),  # user 1 returns within the horizon of T and of T + 7 d: label 0
    Order(2, T - 10 * DAY),  # user 2 never returns: label 1
    Order(3, T - 10 * DAY),
    Order(3, T + 70 * DAY),  # user 3 returns after T's 60-day horizon: label 1 at T
    Order(4, T - 400 * DAY),  # user 4 has no order within 365 days of T: outside the population
    Order(1, T + 75 * DAY),  # the last order: labels are observed through T + 75 d
]


# the columns a binary prediction fills (a multiclass one adds predicted_class and probabilities)
EIGHT = "request_id, predicted_at, entity_id, model_version, score, features, endpoint, as_of"


def _logged(tmp_path: Path) -> Workdir:
    """The tiny lake and a prediction log of known answers."""
    workdir = Workdir.at(tmp_path / "wd")
    commit_tiny_lake(workdir, ORDERS, period_end=T + 76 * DAY, users=4)
    log = PredictionLog(workdir.predictions / "predictions.db", flush_seconds=0.05)
    rows = [
        (1, T, 0.2),
        (2, T, 0.9),
        (3, T, 0.1),
        (4, T, 0.5),
        (1, T + 7 * DAY, 0.3),
        (2, T + 7 * DAY, 0.8),
        (1, T + 21 * DAY, 0.5),  # T + 81 d > T + 75 d: pending
    ]
    for i, (customer, as_of, probability) in enumerate(rows):
        log.append(f"r{i}", utc_iso(T + 100 * DAY), customer, "1", probability, {}, "score", utc_iso(as_of))
    log.append("old", utc_iso(T), 1, "1", 0.5, {}, "predict")  # no data time: never labelled
    log.close()
    return workdir


@pytest.fixture
def report(tmp_path: Path) -> performance.PerformanceReport:
    return performance.evaluate(default_config(), _logged(tmp_path), period_days=7)


def test_periods_have_known_answers_and_pending_is_not_zero(report) -> None:
    first, second, pending = report.periods
    assert (first.start, first.predictions, first.observable, first.labelled) == ("2024-03-04", 4, 4, 3)
    assert first.status == "observed"
    assert first.roc_auc == pytest.approx(0.5)  # positives 0.9 and 0.1 against the negative 0.2
    assert first.observed_rate == pytest.approx(2 / 3)
    assert first.brier == pytest.approx((0.2**2 + 0.1**2 + 0.9**2) / 3)
    assert first.mean_probability == pytest.approx(0.4)
    assert (second.start, second.labelled, second.roc_auc, second.observed_rate) == (
        "2024-03-11",
        2,
        1.0,
        0.5,
    )
    assert (pending.start, pending.status, pending.labelled, pending.predictions) == (
        "2024-03-25",
        "pending",
        0,
        1,
    )
    assert pending.roc_auc is None and pending.observed_rate is None


def test_counts_outside_population_and_without_data_time(report) -> None:
    assert report.predictions == 8 and report.without_as_of == 1 and report.outside_population == 1
    assert report.observed_until.startswith((T + 75 * DAY).date().isoformat())
    assert report.recent(28) == (5, pytest.approx(4 / 6))  # positives .9 .1 .8 vs negatives .2 .3
    assert report.recent(3) == (2, 1.0)


def test_calibration_table_bins_every_labelled_prediction(report) -> None:
    # labelled: (0.2, 0), (0.9, 1), (0.1, 1), (0.3, 0), (0.8, 1)
    table = {row["bin"]: row for row in report.calibration()}
    assert sorted(table) == ["0.1–0.2", "0.2–0.3", "0.3–0.4", "0.8–0.9", "0.9–1.0"]
    assert table["0.1–0.2"] == {
        "bin": "0.1–0.2",
        "predictions": 1,
        "mean_probability": 0.1,
        "observed_rate": 1.0,
    }
    assert sum(row["predictions"] for row in table.values()) == 5
    assert report.to_dict()["calibration"] == report.calibration()


# (customer_id, churn_probability, as_of) rows a client or a hand edit could leave in the log
BAD_ROWS = [
    (1, 0.5, "9999-12-31T23:59:59Z"),  # issue 11: beyond pandas' range, stopped every reader
    (1, 0.5, "yesterday"),
    (1, 0.5, "2200-01-01T00:00:00+00:00"),  # representable, but after now
    ("abc", 0.5, utc_iso(T)),
    (1.5, 0.5, utc_iso(T)),
    (1, float("inf"), utc_iso(T)),
    (1, 1.5, utc_iso(T)),
    (1, "high", utc_iso(T)),
]


def test_bad_rows_are_counted_and_skipped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    workdir = _logged(tmp_path)
    with sqlite3.connect(workdir.predictions / "predictions.db") as con:
        con.executemany(
            f"INSERT INTO predictions ({EIGHT}) VALUES (?, ?, ?, ?, ?, '{{}}', 'score', ?)",
            [(f"bad{i}", utc_iso(T + 100 * DAY), c, "1", p, a) for i, (c, p, a) in enumerate(BAD_ROWS)],
        )
    with caplog.at_level(logging.WARNING, logger="flywheel.monitoring.logrows"):
        report = performance.evaluate(default_config(), workdir, period_days=7)
    assert report.skipped_rows == 8
    assert report.skipped == {"as_of": 3, "entity_id": 2, "score": 3}
    assert report.to_dict()["skipped_rows"] == 8
    assert "skipped 8 bad row(s)" in caplog.text and "9999-12-31" in caplog.text
    # the good rows give the same answers as without the bad ones
    first, second, pending = report.periods
    assert (first.predictions, first.labelled, first.roc_auc) == (4, 3, pytest.approx(0.5))
    assert (second.labelled, pending.status) == (2, "pending")
    assert report.predictions == 8 and report.without_as_of == 1


def test_a_prediction_without_a_customer_id_spoils_no_other_row(tmp_path: Path) -> None:
    """Regression (review of issue 11): one `/v1/score` without `customer_id` made the id column float,
    so every row's id looked like a non-integer and every row was skipped."""
    workdir = _logged(tmp_path)
    with sqlite3.connect(workdir.predictions / "predictions.db") as con:
        con.execute(
            f"INSERT INTO predictions ({EIGHT}) VALUES ('anon', ?, NULL, '1', 0.4, '{{}}', 'score', ?)",
            (utc_iso(T + 100 * DAY), utc_iso(T)),
        )
    report = performance.evaluate(default_config(), workdir, period_days=7)
    assert report.skipped_rows == 0 and report.predictions == 9
    first = report.periods[0]
    assert (first.predictions, first.labelled, first.roc_auc) == (4, 3, pytest.approx(0.5))


def test_multiclass_periods_score_the_logged_class_probabilities() -> None:
    """A multiclass report reads each labelled prediction's probabilities (the JSON list the service
    logs) and gives accuracy, macro-F1 and log loss; recent() answers the configured metric."""

    import numpy as np
    import pandas as pd
    from sklearn.metrics import f1_score, log_loss

    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    y = np.array([0, 1, 2, 1, 2])
    as_of = pd.to_datetime(["2024-03-04"] * 3 + ["2024-03-20"] * 2, utc=True)
    labelled = pd.DataFrame(
        {"as_of": as_of, "label": y, "score": p.max(1), "probabilities": [json.dumps(r.tolist()) for r in p]}
    )
    report = performance.PerformanceReport(
        0, "2024-04-01", 5, 0, 0, labelled=labelled, classes=("a", "b", "c")
    )
    figures = performance._metrics(labelled, report.classes)
    assert figures["accuracy"] == pytest.approx(0.8)
    assert figures["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    assert figures["log_loss"] == pytest.approx(log_loss(y, p))
    assert figures["mean_probability"] == pytest.approx(p.max(1).mean())
    assert report.recent(7, "accuracy") == (2, pytest.approx(0.5))  # the newest week: one of two right
    assert report.calibration() == []  # the eval step's per-class curves stand in for the binary table


def test_a_rollouts_arms_are_reported_apart_and_a_shadow_is_compared_on_the_same_requests(
    tmp_path: Path,
) -> None:
    """The fixture's rows answered by a champion arm with a shadow scoring each one too: every figure
    but the arms' own is what it was without the shadow; the shadow is compared pairwise."""
    workdir = _logged(tmp_path)
    plain = performance.evaluate(default_config(), workdir, period_days=7)
    shadow_scores = {"r0": 0.1, "r1": 0.9, "r2": 0.8, "r3": 0.5, "r4": 0.2, "r5": 0.7, "r6": 0.5}
    log = PredictionLog(workdir.predictions / "predictions.db", flush_seconds=0.05)
    with sqlite3.connect(workdir.predictions / "predictions.db") as con:
        con.execute("UPDATE predictions SET arm = 'champion' WHERE request_id LIKE 'r%'")
        rows = con.execute(
            "SELECT request_id, entity_id, as_of FROM predictions WHERE arm IS NOT NULL"
        ).fetchall()
    for request_id, customer, as_of in rows:
        log.append(
            request_id,
            utc_iso(T + 100 * DAY),
            customer,
            "2",
            shadow_scores[request_id],
            {},
            "score",
            as_of,
            arm="shadow",
        )
    log.close()
    report = performance.evaluate(default_config(), workdir, period_days=7)
    assert [asdict(p) for p in report.periods] == [asdict(p) for p in plain.periods]
    assert (report.predictions, report.outside_population) == (plain.predictions, plain.outside_population)
    arms = {(a["arm"], a["version"]): a for a in report.arms()}
    assert {k: (a["predictions"], a["labelled"]) for k, a in arms.items()} == {
        ("-", "1"): (1, 0),  # the row without a data time, logged before the rollout
        ("champion", "1"): (7, 5),
        ("shadow", "2"): (7, 5),
    }
    assert arms[("champion", "1")]["roc_auc"] == pytest.approx(4 / 6)
    assert arms[("shadow", "2")]["roc_auc"] == pytest.approx(1.0)
    [paired] = report.shadow_comparisons(default_config())
    assert (paired["pairs"], paired["shadow"], paired["champion"], paired["metric"]) == (
        5,
        "2",
        "1",
        "roc_auc",
    )
    assert paired["delta"] == pytest.approx(1 / 3)
    assert report.to_dict()["arms"] == report.arms()
    later = PredictionLog(workdir.predictions / "predictions.db", flush_seconds=0.05)  # a second shadow
    for request_id, customer, as_of in rows:
        later.append(request_id, utc_iso(T + 101 * DAY), customer, "3", 0.5, {}, "score", as_of, arm="shadow")
    later.close()
    again = performance.evaluate(default_config(), workdir, period_days=7).shadow_comparisons(
        default_config()
    )
    assert [(c["shadow"], c["champion"], c["pairs"]) for c in again] == [("2", "1", 5), ("3", "1", 5)]
    assert again[0]["delta"] == pytest.approx(1 / 3)  # each shadow on its own pairs


def test_every_period_is_estimated_and_a_pending_one_has_its_estimate_only(report) -> None:
    first, _, pending = report.periods
    # the pending period's one prediction (0.5): expected accuracy and F1 at the default threshold
    assert pending.estimated == {"pr_auc": 0.5, "accuracy": 0.5, "f1": pytest.approx(2 / 3)}
    assert pending.estimation_error == {} and pending.concept_shift == []
    # the first period: estimated from its four predictions, the error measured on its three labelled
    assert first.estimated["roc_auc"] == pytest.approx(
        estimation.expected_metrics(np.array([0.2, 0.9, 0.1, 0.5]))["roc_auc"]
    )
    labelled = np.array([0.2, 0.9, 0.1])
    assert first.estimation_error["roc_auc"] == pytest.approx(
        0.5 - estimation.expected_metrics(labelled)["roc_auc"]
    )
    assert first.accuracy == pytest.approx(2 / 3) and first.f1 == pytest.approx(2 / 3)  # at 0.5
    # versions outside the registry: no reference, so no band and no verdict, and the report says so
    assert report.versions["1"].reference is None and first.band == {}
    assert report.to_dict()["estimator"]["versions"]["1"]["reference"] is None


def test_the_retrain_trigger_may_judge_the_estimate_before_labels(tmp_path: Path) -> None:
    from flywheel.retraining.retrain import _performance

    workdir = _logged(tmp_path)
    newest = np.array([0.2, 0.9, 0.1, 0.5, 0.3, 0.8, 0.5])  # the newest 28 days hold every dated row
    expected = estimation.expected_metrics(newest)["roc_auc"]
    realized = 4 / 6  # the labelled rows' ROC-AUC (see above): below the bound; the estimate is not
    assert realized < 0.75 <= expected
    for source, fired in (("realized", True), ("estimated", False), ("either", True)):
        config = default_config(
            retrain={"performance_source": source, "min_labelled": 5, "min_roc_auc": 0.75}
        )
        trigger = _performance(config, workdir)
        assert trigger.fired is fired, (source, trigger)
        assert ("estimated" in trigger.value) is (source != "realized")
