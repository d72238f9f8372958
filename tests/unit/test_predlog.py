"""The prediction log writer survives any row and any write error, and says when it is not writing."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from flywheel.serving.predlog import SCHEMA, PredictionLog, read_log


def _append(log: PredictionLog, request_id: str, customer_id: int | None = 1) -> None:
    log.append(request_id, "2024-01-01T00:00:00+00:00", customer_id, "1", 0.5, {"orders_30d": 1}, "predict")


def _until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_an_unstorable_row_is_skipped_and_counted_and_the_writer_keeps_writing(tmp_path: Path) -> None:
    """Regression: a customer id of 2^63 raised OverflowError in the writer thread, which died; every
    later prediction was acknowledged and never logged."""
    path = tmp_path / "predictions.db"
    log = PredictionLog(path, flush_seconds=0.02)
    try:
        _append(log, "before")
        _append(log, "unstorable", customer_id=2**63)
        _append(log, "after")
        assert _until(lambda: log.written == 2 and log.rejected == 1)
        _append(log, "later")
        assert _until(lambda: log.written == 3)
        assert log.healthy and log.status() is None
    finally:
        log.close()
    assert [row["request_id"] for row in read_log(path)] == ["before", "after", "later"]


def test_a_failing_database_is_retried_reported_and_alerted_once(tmp_path: Path) -> None:
    path = tmp_path / "predictions.db"
    errors: list[str] = []
    log = PredictionLog(path, flush_seconds=0.02, on_error=errors.append)
    try:
        with sqlite3.connect(path) as con:
            con.execute("DROP TABLE predictions")  # the log's table gone from under the writer
        for i in range(3):
            _append(log, f"held-{i}")
        assert _until(lambda: log.write_errors >= 2)  # retried every flush
        assert not log.healthy and "3 rows pending" in log.status() and "no such table" in log.status()
        assert len(errors) == 1  # one alert per failure streak
        with sqlite3.connect(path) as con:
            con.execute(SCHEMA)
        assert _until(lambda: log.healthy)
        assert log.written == 3 and log.pending == 0
    finally:
        log.close()
    assert [row["request_id"] for row in read_log(path)] == ["held-0", "held-1", "held-2"]
    assert not log.alive and "stopped" in log.status()


def test_rows_beyond_the_pending_bound_are_dropped_oldest_first_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "predictions.db"
    log = PredictionLog(path, flush_seconds=0.02, max_pending=2)
    try:
        with sqlite3.connect(path) as con:
            con.execute("DROP TABLE predictions")
        for i in range(5):
            _append(log, f"r{i}")
        assert _until(lambda: log.dropped == 3)
        with sqlite3.connect(path) as con:
            con.execute(SCHEMA)
        assert _until(lambda: log.healthy and log.written == 2)
    finally:
        log.close()
    assert [row["request_id"] for row in read_log(path)] == ["r3", "r4"]


def test_an_alert_that_fails_does_not_stop_the_writer(tmp_path: Path) -> None:
    """Regression (review): the alert of a full disk fails on the same disk; its OSError killed the
    writer thread for good."""
    path = tmp_path / "predictions.db"

    def full_disk(message: str) -> None:
        raise OSError(28, "No space left on device")

    log = PredictionLog(path, flush_seconds=0.02, on_error=full_disk)
    try:
        with sqlite3.connect(path) as con:
            con.execute("DROP TABLE predictions")
        _append(log, "held")
        assert _until(lambda: log.write_errors >= 2)
        assert log.alive
        with sqlite3.connect(path) as con:
            con.execute(SCHEMA)
        assert _until(lambda: log.healthy and log.written == 1)
    finally:
        log.close()


def test_a_corrupt_database_keeps_the_rows_instead_of_rejecting_them(tmp_path: Path) -> None:
    """A database that is no longer a database is the database's failure, not the rows'."""
    path = tmp_path / "predictions.db"
    log = PredictionLog(path, flush_seconds=0.02)
    try:
        _append(log, "first")
        assert _until(lambda: log.written == 1)
        for leftover in tmp_path.glob("predictions.db*"):
            leftover.write_bytes(b"this is not a database file at all; " * 200)
        _append(log, "second")
        assert _until(lambda: log.write_errors >= 1)
        assert log.rejected == 0 and log.pending == 1 and not log.healthy
    finally:
        log.close()


def test_a_log_written_before_use_cases_reads_with_the_generic_names(tmp_path: Path) -> None:
    """A log from before the plug-in use cases names its columns customer_id and churn_probability;
    readers see entity_id and score, and new rows append to it by position."""
    path = tmp_path / "predictions.db"
    legacy = (
        SCHEMA.replace("entity_id,", "customer_id INTEGER,")
        .replace("score REAL", "churn_probability REAL")
        .replace(",\n    predicted_class TEXT,\n    probabilities TEXT,\n    arm TEXT", "")
    )
    assert "predicted_class" not in legacy and "arm" not in legacy
    with sqlite3.connect(path) as con:
        con.execute(legacy)
        con.execute(
            "INSERT INTO predictions VALUES "
            "('old', '2024-01-01T00:00:00+00:00', 7, '1', 0.25, '{}', 'predict', NULL)"
        )
    log = PredictionLog(path, flush_seconds=0.02)
    try:
        _append(log, "new", customer_id=8)
        assert _until(lambda: log.written == 1)
    finally:
        log.close()
    rows = read_log(path, columns=("request_id", "entity_id", "score"))
    assert rows == [
        {"request_id": "old", "entity_id": 7, "score": 0.25},
        {"request_id": "new", "entity_id": 8, "score": 0.5},
    ]
    assert {"entity_id", "score"} <= set(read_log(path)[0])


def test_a_folder_of_logs_reads_as_one_log_oldest_first(tmp_path: Path) -> None:
    """Hosts sharing a workdir each write their own log (serving.log_name); readers take the folder."""
    for name, moments in {"predictions-a": ["01", "03"], "predictions-b": ["02", "04"]}.items():
        log = PredictionLog(tmp_path / f"{name}.db", flush_seconds=0.02)
        try:
            for minute in moments:
                log.append(f"{name}-{minute}", f"2024-01-01T00:{minute}:00+00:00", 1, "1", 0.5, {}, "predict")
        finally:
            log.close()
    rows = read_log(tmp_path, columns=("request_id", "score"))
    assert [row["request_id"] for row in rows] == [
        "predictions-a-01",
        "predictions-b-02",
        "predictions-a-03",
        "predictions-b-04",
    ]
    assert set(rows[0]) == {"request_id", "score"}
    assert [row["request_id"] for row in read_log(tmp_path / "predictions-b.db")] == [
        "predictions-b-02",
        "predictions-b-04",
    ]


def _open_at(path: Path, barrier) -> str:
    barrier.wait()
    try:
        PredictionLog(path, flush_seconds=0.02).close()
    except Exception as error:  # what the race raised
        return f"{type(error).__name__}: {error}"
    return ""


def test_writers_starting_at_once_all_open_the_log(tmp_path: Path) -> None:
    """Regression: two service workers starting together raced to create the log, and one failed its
    startup with "database is locked" (switching to WAL does not wait for the other)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    errors = []
    for round_ in range(8):
        path = tmp_path / f"predictions-{round_}.db"
        with context.Manager() as manager:
            barrier = manager.Barrier(6)
            with context.Pool(6) as pool:
                errors += [e for e in pool.starmap(_open_at, [(path, barrier)] * 6) if e]
    assert errors == []
