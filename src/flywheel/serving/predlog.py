"""The prediction log: every served prediction, appended by a background writer to SQLite (WAL).

``as_of`` is the data time of the features a prediction used (the online row's snapshot time, or the
time a ``/v1/score`` client gives); delayed-label performance joins labels on it.

Requests only put a tuple on a queue; the writer thread inserts in batches every
``flush_seconds`` and on ``close``. SQLite's WAL journal keeps the file consistent if the process
is killed; at most the last flush interval of predictions is then missing.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.errors import FlywheelError

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT NOT NULL,
    predicted_at TEXT NOT NULL,
    customer_id INTEGER,
    model_version TEXT NOT NULL,
    churn_probability REAL NOT NULL,
    features TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    as_of TEXT
)
"""


class PredictionLog:
    def __init__(self, path: Path, flush_seconds: float = 0.5):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.flush_seconds = path, flush_seconds
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        with sqlite3.connect(path) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(SCHEMA)
            columns = {row[1] for row in con.execute("PRAGMA table_info(predictions)")}
            if "as_of" not in columns:  # a log written before as_of existed
                con.execute("ALTER TABLE predictions ADD COLUMN as_of TEXT")
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def append(
        self,
        request_id: str,
        predicted_at: str,
        customer_id: int | None,
        model_version: str,
        probability: float,
        features: dict[str, Any],
        endpoint: str,
        as_of: str | None = None,
    ) -> None:
        self._queue.put(
            (
                request_id,
                predicted_at,
                customer_id,
                model_version,
                probability,
                json.dumps(features, default=str),
                endpoint,
                as_of,
            )
        )

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        con = sqlite3.connect(self.path)
        con.execute("PRAGMA synchronous=NORMAL")
        stopping = False
        while not stopping:
            batch = []
            try:
                item = self._queue.get(timeout=self.flush_seconds)
                while True:
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if batch:
                with con:
                    con.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
        con.close()


def read_log(
    path: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    columns: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Logged predictions answered in ``[since, until)`` (default: all), oldest first."""
    if not path.exists():
        raise FlywheelError(f"no prediction log at {path}; serve or simulate traffic first")
    where, params = [], []
    if since is not None:
        where.append("predicted_at >= ?")
        params.append(utc_iso(since))
    if until is not None:
        where.append("predicted_at < ?")
        params.append(utc_iso(until))
    query = f"SELECT {', '.join(columns) if columns else '*'} FROM predictions"
    if where:
        query += " WHERE " + " AND ".join(where)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.row_factory = sqlite3.Row
        return [dict(row) for row in con.execute(query + " ORDER BY rowid", params)]


def utc_iso(moment: datetime | None) -> str | None:
    """``as_of`` as stored: ISO 8601 in UTC (a naive time is taken to be UTC)."""
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()
