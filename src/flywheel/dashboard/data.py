"""What the dashboard shows, gathered from the workdir and the registry: the newest performance
report, the stored drift reports, the newest predictions of the log, the registered versions with
their alias moves and rollout, the retrain decisions and the alerts.

Everything is read as it was written (no report is computed again, no training data is read) and
bounded: the newest reports, the newest log rows, the tail of the alerts file. A file being written
or unreadable is left out (the next gathering reads it); a section with nothing to show is empty,
never an error.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.serving.predlog import LEGACY_COLUMNS, SHADOW
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
MAX_REPORTS = 60  # drift reports and retrain decisions on the timelines: the newest
MAX_PREDICTIONS = 5_000  # the newest logged predictions in the distribution
MAX_ALERTS = 200  # the newest alerts on the timeline
ALERTS_TAIL_BYTES = 512 * 1024  # how much of the end of alerts.jsonl is read
# reports are named by their UTC creation time: <kind>-20261204T101502123456.json
_STAMP = re.compile(r"^[a-z]+-(\d{8}T\d{6})(\d{0,6})\.(json|html)$")


@dataclass(frozen=True)
class Report:
    """One stored report: its file name, when it was made (UTC) and its content."""

    name: str
    created: datetime
    content: dict[str, Any]


@dataclass
class Predictions:
    """The newest logged predictions (a shadow challenger's left out), oldest first."""

    scores: list[float] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    classes: list[str | None] = field(default_factory=list)  # a multiclass prediction's class
    first: str | None = None  # predicted_at of the oldest row shown
    last: str | None = None
    logs: int = 0  # prediction log files read
    error: str | None = None  # why a log could not be read


@dataclass
class RegistryHistory:
    """The registered versions of the use case's model and what moved between them."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)  # alias moves, oldest first
    rollout_events: list[dict[str, Any]] = field(default_factory=list)
    rollout: dict[str, Any] | None = None  # the running rollout, with its ``describe`` text
    error: str | None = None  # why the registry could not be read


@dataclass
class Snapshot:
    """Every section's data at one moment."""

    gathered_at: datetime
    performance: Report | None
    drift: list[Report]
    predictions: Predictions
    registry: RegistryHistory | None  # None: no registry yet (nothing was ever trained)
    retrains: list[Report]
    alerts: list[dict[str, Any]]  # newest first
    drift_page: Path | None = None  # the newest drift report's HTML page, when written beside it


def gather(workdir: Workdir, client: Any | None, model_name: str) -> Snapshot:
    """Every section of the dashboard of ``workdir``; ``client`` is an MLflow client on its registry
    (None when there is none yet)."""
    reports = workdir.reports
    performance = stored_reports(reports, "performance", limit=1)
    drift = stored_reports(reports, "drift")
    page = reports / Path(drift[-1].name).with_suffix(".html").name if drift else None
    return Snapshot(
        gathered_at=datetime.now(UTC),
        performance=performance[-1] if performance else None,
        drift=drift,
        predictions=recent_predictions(workdir.predictions),
        registry=registry_history(client, model_name) if client is not None else None,
        retrains=stored_reports(reports, "retrain"),
        alerts=recent_alerts(workdir.alerts_log),
        drift_page=page if page is not None and page.is_file() else None,
    )


def report_time(name: str) -> datetime | None:
    """The UTC time in a report's name, or None when the name carries none."""
    found = _STAMP.match(name)
    if found is None:
        return None
    stamp = datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return stamp.replace(microsecond=int(found.group(2).ljust(6, "0")))


def stored_reports(folder: Path, kind: str, limit: int = MAX_REPORTS) -> list[Report]:
    """The newest ``limit`` readable ``<kind>-*.json`` reports in ``folder``, oldest first (names
    sort by time)."""
    found: list[Report] = []
    for path in sorted(folder.glob(f"{kind}-*.json"), reverse=True):
        if len(found) == limit:
            break
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):  # being written, or not a report: the next gathering sees it
            _logger.warning("dashboard: %s is not readable JSON; left out", path)
            continue
        if not isinstance(content, dict):
            continue
        created = _time(content.get("created_at") or content.get("decided_at")) or report_time(path.name)
        found.append(Report(path.name, created or datetime.fromtimestamp(0, UTC), content))
    return found[::-1]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def recent_predictions(folder: Path, limit: int = MAX_PREDICTIONS) -> Predictions:
    """The newest ``limit`` predictions over every log in ``folder`` (one per serving host)."""
    rows: list[tuple[str, str, Any, Any]] = []
    logs = sorted(folder.glob("*.db")) if folder.is_dir() else []
    result = Predictions(logs=len(logs))
    for log in logs:
        try:
            rows += _newest_rows(log, limit)
        except sqlite3.Error as error:  # locked past the timeout, or not a log: say so, show the rest
            result.error = f"{log.name}: {error}"
    rows.sort(key=lambda row: row[0])
    for predicted_at, version, score, predicted_class in rows[-limit:]:
        if isinstance(score, int | float) and not isinstance(score, bool) and 0.0 <= score <= 1.0:
            result.scores.append(float(score))
            result.versions.append(str(version))
            result.classes.append(None if predicted_class is None else str(predicted_class))
            result.first = result.first or predicted_at
            result.last = predicted_at
    return result


def _newest_rows(log: Path, limit: int) -> list[tuple[str, str, Any, Any]]:
    with closing(sqlite3.connect(f"{log.as_uri()}?mode=ro", uri=True, timeout=2)) as con:
        held = {row[1] for row in con.execute("PRAGMA table_info(predictions)")}
        if not held:
            return []
        score = LEGACY_COLUMNS["score"] if LEGACY_COLUMNS["score"] in held else "score"
        predicted_class = "predicted_class" if "predicted_class" in held else "NULL"
        unshadowed = f"WHERE arm IS NULL OR arm != '{SHADOW}'" if "arm" in held else ""
        return con.execute(
            f"SELECT predicted_at, model_version, {score}, {predicted_class} FROM predictions "
            f"{unshadowed} ORDER BY rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()


def recent_alerts(path: Path, limit: int = MAX_ALERTS) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts, newest first, from the end of ``alerts.jsonl``."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(size - ALERTS_TAIL_BYTES, 0))
            lines = file.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    if size > ALERTS_TAIL_BYTES:
        lines = lines[1:]  # the first may be the end of a line cut in two
    alerts = []
    for line in reversed(lines):
        try:
            found = json.loads(line)
        except ValueError:  # a line being appended
            continue
        if isinstance(found, dict):
            alerts.append(found)
            if len(alerts) == limit:
                break
    return alerts


def registry_history(client: Any, name: str) -> RegistryHistory:
    """The versions of model ``name`` (creation time, gate, aliases), the alias moves, the rollout
    decisions and the running rollout; a registry that cannot be read gives its error instead."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from flywheel.registry import registry
    from flywheel.registry.registry import RegistryError
    from flywheel.rollout import state

    try:
        found = client.search_model_versions(f"name = '{name}'")
        if not found:
            return RegistryHistory()
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        history = RegistryHistory(
            versions=[
                {
                    "version": str(v.version),
                    "created": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC),
                    "gate_passed": (v.tags or {}).get("gate.passed"),
                    "model_type": (v.tags or {}).get("model_type") or "",
                    "aliases": sorted(aliases.get(str(v.version), [])),
                }
                for v in sorted(found, key=lambda v: int(v.version))
            ],
            moves=registry.history(client, name),
            rollout_events=state.events(client, name),
        )
        rollout = state.current(client, name)
    except (MlflowException, SQLAlchemyError, sqlite3.Error, OSError, RegistryError) as error:
        return RegistryHistory(error=f"the registry could not be read ({type(error).__name__}: {error})")
    if rollout is not None:
        history.rollout = {**asdict(rollout), "describe": rollout.describe()}
    return history
