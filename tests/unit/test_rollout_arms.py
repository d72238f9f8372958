"""A rollout's arms in the prediction logs (:mod:`flywheel.rollout.arms`) and the automatic guards
(:mod:`flywheel.rollout.guards`), on logs written by the real writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from flywheel.config import GuardsConfig, RolloutConfig
from flywheel.rollout.arms import ArmCounter, bandit_outcomes, compare
from flywheel.rollout.guards import Watch
from flywheel.rollout.state import Rollout
from flywheel.rollout.stats import two_proportion_test
from flywheel.serving.predlog import PredictionLog

STARTED = "2026-12-01T00:00:00+00:00"
ROLLOUT = Rollout("r1-v2", "ab", "2", "1", 50.0, 0.05, STARTED, STARTED)


def _log(path: Path, rows: list[tuple[str, str, str]], outcomes: list[tuple[str, int]] = ()) -> None:
    """(request id, arm, version) predictions and (request id, outcome) outcomes, written and closed."""
    log = PredictionLog(path, flush_seconds=0.01)
    for request_id, arm, version in rows:
        log.append(request_id, "2026-12-02T00:00:00+00:00", 1, version, 0.5, {}, "predict", arm=arm)
    for request_id, outcome in outcomes:
        log.append_outcome(request_id, outcome, "2026-12-02T00:01:00+00:00")
    log.close()


def _id(n: int) -> str:
    return f"{n:032x}"


def test_arms_join_outcomes_across_logs_once_each(tmp_path: Path) -> None:
    """Predictions on one host, outcomes posted to another; a request id counts once with its highest
    outcome; an outcome whose prediction is not logged yet is found on a later update."""
    champion = [(_id(i), "champion", "1") for i in range(10)]
    challenger = [(_id(100 + i), "challenger", "2") for i in range(10)]
    shadow = [(_id(i), "shadow", "2") for i in range(3)]
    other_rollout = [(_id(500), "challenger", "3")]  # another version: not this rollout's
    _log(tmp_path / "a.db", champion + challenger + shadow + other_rollout)
    posted = [(_id(0), 1), (_id(1), 0), (_id(1), 1), (_id(2), 0), (_id(100), 1), (_id(100), 1)]
    _log(tmp_path / "b.db", [], [*posted, (_id(999), 1), (_id(500), 1)])
    counter = ArmCounter(tmp_path, ROLLOUT)
    figures = counter.update()
    assert (figures["champion"].predictions, figures["champion"].outcomes, figures["champion"].successes) == (
        10,
        3,
        2,
    )
    assert (figures["challenger"].predictions, figures["challenger"].outcomes) == (10, 1)
    assert figures["challenger"].successes == 1 and figures["shadow"].predictions == 3
    assert figures["shadow"].outcomes == 0  # a shadow answered no one
    # the prediction of request 999 arrives after its outcome (another host's writer was behind)
    _log(tmp_path / "c.db", [(_id(999), "challenger", "2")], [(_id(2), 1)])
    figures = counter.update()
    assert (figures["challenger"].predictions, figures["challenger"].successes) == (11, 2)
    assert (figures["champion"].outcomes, figures["champion"].successes) == (3, 3)  # request 2: 0 → 1
    assert counter.update() == figures  # nothing new: nothing counted twice
    assert bandit_outcomes(figures) == {"champion": (3, 7), "challenger": (2, 9)}


def test_the_ab_verdict_is_the_z_test_of_the_arms(tmp_path: Path) -> None:
    rows = [(_id(i), "champion", "1") for i in range(400)] + [
        (_id(1000 + i), "challenger", "2") for i in range(400)
    ]
    converted = [(_id(i), 1) for i in range(40)] + [(_id(1000 + i), 1) for i in range(72)]
    _log(tmp_path / "a.db", rows, converted)
    settings = RolloutConfig(min_effect=0.05)
    result = compare(ArmCounter(tmp_path, ROLLOUT).update(), settings)
    expected = two_proportion_test(40, 400, 72, 400, min_detectable_effect=0.05)
    assert result == expected and result.recommendation == "promote"
    assert result.required_per_arm == expected.required_per_arm > 0


def test_no_verdict_before_both_arms_answered(tmp_path: Path) -> None:
    _log(tmp_path / "a.db", [(_id(1), "champion", "1")])
    assert compare(ArmCounter(tmp_path, ROLLOUT).update(), RolloutConfig()) is None


LIMITS = GuardsConfig(
    min_predictions=50, max_error_rate=0.05, max_p99_ms=20, max_prediction_psi=0.25, min_drift_scores=400
)


def _watched(challenger_scores: np.ndarray, seconds: float = 0.001, failures: int = 0) -> Watch:
    rng = np.random.default_rng(0)
    watch = Watch(("r1", "canary"))
    for score in rng.beta(2, 5, 500):
        watch.scored("champion", 0.001, [float(score)])
    for score in challenger_scores:
        watch.scored("challenger", seconds, [float(score)])
    watch.failed("challenger", failures)
    return watch


def test_each_guard_fires_on_its_own_limit() -> None:
    rng = np.random.default_rng(1)
    alike = rng.beta(2, 5, 500)
    assert _watched(alike).verdict(LIMITS) is None
    assert "error rate 9.1% of the challenger's 550 newest" in _watched(alike, failures=50).verdict(LIMITS)
    assert "p99 scoring latency 30.0 ms over the limit 20 ms" in _watched(alike, seconds=0.03).verdict(LIMITS)
    drifted = _watched(rng.beta(5, 2, 500)).verdict(LIMITS)
    assert drifted.startswith("prediction drift: PSI") and "over the limit 0.25" in drifted


def test_a_guard_waits_for_enough_predictions() -> None:
    watch = Watch(("r1", "canary"))
    for _ in range(10):
        watch.failed("challenger", 1)
    assert watch.verdict(LIMITS) is None  # 10 of the 50 it needs
    watch.failed("challenger", 40)
    assert (
        watch.verdict(LIMITS)
        == "error rate 100.0% of the challenger's 50 newest scorings over the limit 5.0%"
    )


def test_a_shadow_is_judged_on_its_own_scorings() -> None:
    watch = Watch(("r1", "shadow"))
    for _ in range(60):
        watch.scored("champion", 0.001, [0.2])
        watch.scored("shadow", 0.5, [0.2])
    assert watch.verdict(LIMITS) == "challenger p99 scoring latency 500.0 ms over the limit 20 ms"


def test_an_outcome_never_counts_before_its_prediction(tmp_path: Path) -> None:
    """Regression (review): a prediction and its outcome written between the count of predictions
    and the read of outcomes made a success without its trial (negative failures: the bandit's
    Thompson draw raised and stopped the service's poller)."""
    _log(tmp_path / "a.db", [(_id(1), "challenger", "2")])
    counter = ArmCounter(tmp_path, ROLLOUT)
    counted = counter._count_predictions

    def count_then_write(log: Path, con) -> None:
        counted(log, con)
        with sqlite3.connect(log) as writer:  # another writer, right after the count
            writer.execute(
                "INSERT INTO predictions (request_id, predicted_at, entity_id, model_version, score, "
                "features, endpoint, arm) VALUES (?, '2026-12-02T00:00:00+00:00', 1, '2', 0.5, '{}', "
                "'predict', 'challenger')",
                (_id(2),),
            )
            writer.execute("INSERT INTO outcomes VALUES (?, 1, '2026-12-02T00:01:00+00:00')", (_id(2),))

    counter._count_predictions = count_then_write
    figures = counter.update()
    assert (figures["challenger"].predictions, figures["challenger"].successes) == (1, 0)
    counter._count_predictions = counted
    figures = counter.update()  # the next update counts both
    assert (figures["challenger"].predictions, figures["challenger"].successes) == (2, 1)


def test_a_log_without_arms_is_left_out(tmp_path: Path, caplog) -> None:
    """Regression (review): a log of an earlier release (no outcomes table, no arm column) or one
    another worker is still creating made every update fail."""
    with sqlite3.connect(tmp_path / "old.db") as con:
        con.execute("CREATE TABLE predictions (request_id TEXT, predicted_at TEXT, score REAL)")
    (tmp_path / "creating.db").touch()
    _log(tmp_path / "new.db", [(_id(1), "champion", "1")], [(_id(1), 1)])
    counter = ArmCounter(tmp_path, ROLLOUT)
    assert counter.update()["champion"].successes == 1
    counter.update()
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 2 and any("old.db" in m and "before rollouts" in m for m in left_out)


def test_failures_count_among_the_newest_scorings_and_drift_needs_enough_scores() -> None:
    """Regression (review): failures were diluted by every scoring since the start (600 failures
    after 100,000 good ones: 0.6 %, never aborted), one batch call was a "p99", and 100 scores per arm
    made PSI noise abort healthy canaries."""
    watch = Watch(("r1", "canary"))
    for _ in range(100_000):
        watch.scored("challenger", 0.001, [0.5])
    for _ in range(600):
        watch.failed("challenger", 1)
    assert "error rate 6.0% of the challenger's 10,000 newest scorings" in watch.verdict(LIMITS)
    batch = Watch(("r1", "canary"))
    batch.scored("challenger", 0.5, [0.5] * 60)  # one slow call of 60 rows: no p99 of one sample
    assert batch.verdict(LIMITS) is None
    rng = np.random.default_rng(2)
    same = Watch(("r1", "canary"))
    for score in rng.beta(2, 5, 100):
        same.scored("champion", 0.001, [float(score)])
    for score in rng.beta(2, 5, 100):
        same.scored("challenger", 0.001, [float(score)])
    assert same.verdict(GuardsConfig(min_predictions=100)) is None  # 100 a side: too few for PSI
