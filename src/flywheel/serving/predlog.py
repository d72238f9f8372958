"""The prediction log: every served prediction, appended by a background writer to SQLite (WAL).

``as_of`` is the data time of the features a prediction used (the online row's snapshot time, or the
time a ``/v1/score`` client gives); delayed-label performance joins labels on it. A multiclass
prediction also logs its ``predicted_class`` and ``probabilities`` (a JSON list in the use case's
class order); its ``score`` is the predicted class's probability. During a rollout each row names its
``arm``; the ``outcomes`` table holds the outcomes clients post for answered requests.

Requests only put a tuple on a queue; the writer thread inserts in batches every
``flush_seconds`` and on ``close``. SQLite's WAL journal keeps the file consistent if the process
is killed; at most the last flush interval of predictions is then missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.errors import FlywheelError

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT NOT NULL,
    predicted_at TEXT NOT NULL,
    entity_id,
    model_version TEXT NOT NULL,
    score REAL NOT NULL,
    features TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    as_of TEXT,
    predicted_class TEXT,
    probabilities TEXT,
    arm TEXT
)
"""
# outcomes posted for answered requests (``POST /v1/outcomes``: a conversion, a click), joined with the
# predictions by request id to compare a rollout's arms
OUTCOMES = """
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT NOT NULL,
    outcome INTEGER NOT NULL,
    received_at TEXT NOT NULL
)
"""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS predictions_request_id ON predictions (request_id)",
    "CREATE INDEX IF NOT EXISTS outcomes_received_at ON outcomes (received_at)",
)
INSERT_OUTCOME = "INSERT INTO outcomes VALUES (?, ?, ?)"
# columns a log written by an earlier release lacks, added when it is opened
ADDED_COLUMNS = {"as_of": "TEXT", "predicted_class": "TEXT", "probabilities": "TEXT", "arm": "TEXT"}
# the arm of a challenger scoring off the response path: its rows answered no one
SHADOW = "shadow"
# by position: a log from before use cases were plug-ins names two columns otherwise (LEGACY_COLUMNS),
# and opening one adds the missing columns at the end, in this order
INSERT = f"INSERT INTO predictions VALUES ({', '.join('?' * (7 + len(ADDED_COLUMNS)))})"
# a log written before use cases were plug-ins names the entity and score columns after churn
LEGACY_COLUMNS = {"entity_id": "customer_id", "score": "churn_probability"}
# errors of one row's values (an integer beyond 64 bits, a string too big, a NULL where none may be);
# any other sqlite3.Error is the database's and the rows wait for it
ROW_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    OverflowError,
    ValueError,
    TypeError,
)
_logger = logging.getLogger(__name__)


class _Outcome(tuple):
    """A queued outcome row, told apart from the prediction rows queued beside it."""


class PredictionLog:
    """The background writer. It survives any row and any write error: a row SQLite cannot store is
    counted as rejected and skipped (the API bounds every value, so this is a last line of defence);
    a failing database (locked, disk full) keeps the rows queued — up to ``max_pending``, the oldest
    dropped and counted beyond that — and is retried every flush, with ``on_error`` called once per
    failure streak. ``healthy`` says whether the writer is running and its last write succeeded.
    ``observe``, when given, is called with the log by the writer thread after every pass (at least
    every ``flush_seconds``) and when it stops: metrics of several worker processes cannot read
    another process's writer at scrape time."""

    def __init__(
        self,
        path: Path,
        flush_seconds: float = 0.5,
        on_error: Callable[[str], None] | None = None,
        max_pending: int = 100_000,
        observe: Callable[[PredictionLog], None] | None = None,
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.flush_seconds = path, flush_seconds
        self.on_error, self.max_pending = on_error, max_pending
        self.observe = observe or (lambda log: None)
        self.written = self.rejected = self.dropped = self.write_errors = 0
        self.last_error: str | None = None
        self._pending: list[tuple[Any, ...]] = []
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._closing = threading.Event()  # cuts the wait for the next batch short
        _prepare(path)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._pending) + self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        return self.alive and self.last_error is None

    def status(self) -> str | None:
        """Why the log is not writing, or None when it is."""
        if not self.alive:
            return f"prediction log writer stopped: {self.last_error or 'unknown reason'}"
        if self.last_error is not None:
            return f"prediction log not writing ({self.pending} rows pending): {self.last_error}"
        return None

    def append(
        self,
        request_id: str,
        predicted_at: str,
        entity_id: Any,
        model_version: str,
        probability: float,
        features: dict[str, Any],
        endpoint: str,
        as_of: str | None = None,
        predicted_class: str | None = None,
        probabilities: list[float] | None = None,
        arm: str | None = None,
    ) -> None:
        self._queue.put(
            (
                request_id,
                predicted_at,
                entity_id,
                model_version,
                probability,
                json.dumps(features, default=str),
                endpoint,
                as_of,
                predicted_class,
                json.dumps(probabilities) if probabilities is not None else None,
                arm,
            )
        )

    def append_outcome(self, request_id: str, outcome: int, received_at: str) -> None:
        """An outcome of an answered request, written with the predictions."""
        self._queue.put(_Outcome((request_id, outcome, received_at)))

    def close(self) -> None:
        self._queue.put(None)
        self._closing.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            con = sqlite3.connect(self.path)
            con.execute("PRAGMA synchronous=NORMAL")
            stopping = False
            while not stopping:
                self.observe(self)
                try:
                    item = self._queue.get(timeout=self.flush_seconds)
                    while True:
                        if item is None:
                            stopping = True
                            break
                        self._pending.append(item)
                        item = self._queue.get_nowait()
                except queue.Empty:
                    pass
                if self._pending:
                    self._flush(con)
                    if not stopping:
                        # the rows of the next interval gather on the queue: a wake and a transaction
                        # per row took the GIL from the requests in flight, 60-80 µs of each
                        self._closing.wait(self.flush_seconds)
            con.close()
            if self._pending:
                _logger.error(
                    "prediction log closed with %d rows not written: %s", self.pending, self.last_error
                )
        except BaseException as error:  # recorded so /ready and /metrics say the writer stopped
            self.last_error = f"{type(error).__name__}: {error}"
            _logger.critical("prediction log writer stopped: %s", self.last_error)
            raise
        finally:
            self.observe(self)

    def _flush(self, con: sqlite3.Connection) -> None:
        try:
            outcomes = [row for row in self._pending if type(row) is _Outcome]
            with con:
                if outcomes:
                    con.executemany(INSERT_OUTCOME, outcomes)
                    con.executemany(INSERT, [row for row in self._pending if type(row) is not _Outcome])
                else:
                    con.executemany(INSERT, self._pending)
            self.written += len(self._pending) - len(outcomes)
        except ROW_ERRORS:  # a row SQLite cannot store: find it, keep the others
            if not self._write_one_by_one(con):
                return
        except sqlite3.Error as error:  # the database (locked, full, gone, corrupt): keep the rows, retry
            self._failed(f"{type(error).__name__}: {error}")
            return
        self._pending.clear()
        if self.last_error is not None:
            _logger.warning("prediction log writing again after: %s", self.last_error)
            self.last_error = None

    def _write_one_by_one(self, con: sqlite3.Connection) -> bool:
        """Insert the pending rows singly, skipping unstorable ones; False when the database fails."""
        for index, row in enumerate(self._pending):
            try:
                with con:
                    con.execute(INSERT_OUTCOME if type(row) is _Outcome else INSERT, row)
                self.written += type(row) is not _Outcome
            except ROW_ERRORS as error:
                self.rejected += 1
                _logger.error("prediction log: row of request %s not storable, skipped: %s", row[0], error)
            except sqlite3.Error as error:
                del self._pending[:index]
                self._failed(f"{type(error).__name__}: {error}")
                return False
        return True

    def _failed(self, message: str) -> None:
        self.write_errors += 1
        if len(self._pending) > self.max_pending:
            self.dropped += len(self._pending) - self.max_pending
            del self._pending[: len(self._pending) - self.max_pending]
        if self.last_error is not None:  # the same streak: counted, not logged every flush
            self.last_error = message
            return
        self.last_error = message
        _logger.error("prediction log write failed (%d rows pending, retrying): %s", self.pending, message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:  # the alert's own failure (e.g. the same full disk) must not stop the writer
                _logger.exception("prediction log: the failure alert could not be sent")


def _prepare(path: Path, attempts: int = 100) -> None:
    """Create the log or bring an older one's columns up to date. Several workers starting at once
    race for it, and switching to WAL answers "database is locked" at once rather than waiting: each
    retries until the first has done it."""
    for attempt in range(attempts):
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as con, con:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(SCHEMA)
                con.execute(OUTCOMES)
                columns = {row[1] for row in con.execute("PRAGMA table_info(predictions)")}
                for name, kind in ADDED_COLUMNS.items():
                    if name not in columns:  # a log written before the column existed
                        con.execute(f"ALTER TABLE predictions ADD COLUMN {name} {kind}")
                for index in INDEXES:
                    con.execute(index)
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def read_log(
    path: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    columns: tuple[str, ...] | None = None,
    shadow: bool = False,
) -> list[dict[str, Any]]:
    """Logged predictions answered in ``[since, until)`` (default: all), oldest first. ``path`` is one
    log or a folder of them (services on several hosts sharing a workdir write one each). A shadow
    challenger's rows answered no one and are left out unless ``shadow``."""
    logs = sorted(path.glob("*.db")) if path.is_dir() else [path] if path.exists() else []
    if not logs:
        raise FlywheelError(f"no prediction log at {path}; serve or simulate traffic first")
    if len(logs) > 1:
        extra = columns is not None and "predicted_at" not in columns  # the order needs it
        wanted = (*columns, "predicted_at") if extra else columns
        rows = [row for log in logs for row in read_log(log, since, until, wanted, shadow)]
        rows.sort(key=lambda row: row["predicted_at"])  # stable: each log's own order within a time
        return [{k: v for k, v in row.items() if k != "predicted_at"} for row in rows] if extra else rows
    path = logs[0]
    where, params = [], []
    if since is not None:
        where.append("predicted_at >= ?")
        params.append(utc_iso(since))
    if until is not None:
        where.append("predicted_at < ?")
        params.append(utc_iso(until))
    with contextlib.closing(sqlite3.connect(path)) as con:
        held = [row[1] for row in con.execute("PRAGMA table_info(predictions)")]
        current = {old: new for new, old in LEGACY_COLUMNS.items()}
        names = columns or [current.get(name, name) for name in held]
        chosen = [
            f"{LEGACY_COLUMNS[n]} AS {n}"
            if LEGACY_COLUMNS.get(n) in held
            else f"NULL AS {n}"  # a column added since this log was written (never opened for writing)
            if n in ADDED_COLUMNS and n not in held
            else n
            for n in names
        ]
        if not shadow and "arm" in held:
            where.append(f"(arm IS NULL OR arm != '{SHADOW}')")
        query = f"SELECT {', '.join(chosen)} FROM predictions"
        if where:
            query += " WHERE " + " AND ".join(where)
        con.row_factory = sqlite3.Row
        return [dict(row) for row in con.execute(query + " ORDER BY rowid", params)]


def utc_iso(moment: datetime | None) -> str | None:
    """``as_of`` as stored: ISO 8601 in UTC (a naive time is taken to be UTC)."""
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()
