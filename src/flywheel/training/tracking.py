"""MLflow tracking: where runs and models go, and the common tags of every run.

With the default store (``sqlite`` in the workdir, ``tracking.uri`` unset) the workdir is
relocatable: MLflow records absolute ``file://`` artifact locations (experiments, runs, logged
models, model versions) and dataset paths, so a copied or moved workdir is re-rooted before MLflow
opens it — otherwise the copy would write its models and decisions into the original folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from flywheel.config import FlywheelConfig, config_hash
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


def tracking_uri(config: FlywheelConfig, workdir: Workdir) -> str:
    return config.tracking.uri or f"sqlite:///{workdir.mlflow_db}"


_done: dict[tuple, str] = {}  # what setup last did in this process → the experiment id


def setup(config: FlywheelConfig, workdir: Workdir) -> str:
    """Point MLflow's tracking and registry at the configured store; returns the experiment id.

    Called by every command that touches MLflow; the work (re-rooting, creating the experiment) is
    done once per process and store — a repeated call with the same store and experiment only checks
    that MLflow still points there."""
    import mlflow

    uri = tracking_uri(config, workdir)
    store = (
        workdir.mlflow_db.stat().st_ino if config.tracking.uri is None and workdir.mlflow_db.exists() else 0
    )
    key = (uri, config.tracking.experiment, store)
    known = _done.get(key)
    if known is not None and mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri:
        return known
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    workdir.root.mkdir(parents=True, exist_ok=True)
    if config.tracking.uri is None:
        reroot(workdir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment_id = ensure_experiment(mlflow.MlflowClient(), config, workdir, config.tracking.experiment)
    mlflow.set_experiment(experiment_id=experiment_id)  # runs go here, never to ./mlruns
    _done.clear()
    if workdir.mlflow_db.exists() or config.tracking.uri is not None:
        store = workdir.mlflow_db.stat().st_ino if config.tracking.uri is None else 0
        _done[(uri, config.tracking.experiment, store)] = experiment_id
    return experiment_id


def _moved_from(con: sqlite3.Connection, workdir: Workdir) -> set[str]:
    """The ``file://`` roots this store's experiments name other than ``workdir``'s: every experiment
    Flywheel creates keeps its artifacts at ``<root>/mlartifacts``."""
    try:
        rows = con.execute(
            "SELECT DISTINCT artifact_location FROM experiments WHERE artifact_location LIKE ?",
            (f"file://%/{workdir.artifacts.name}",),
        ).fetchall()
    except sqlite3.OperationalError:  # MLflow has not created its tables yet
        return set()
    here = workdir.artifacts.as_uri()
    return {location.rsplit("/", 1)[0] for (location,) in rows if location != here}


def reroot(workdir: Workdir, database: Path | None = None) -> None:
    """Rewrite the old root of a copied or moved workdir to this one in its MLflow database
    (``database``: a copy of it that is to become this workdir's)."""
    database = database or workdir.mlflow_db
    if not database.exists():
        return
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as con:
        for old in _moved_from(con, workdir):
            with con:
                _rewrite(con, old, workdir.root)
            _logger.info("re-rooted the MLflow store from %s to %s", old, workdir.root.as_uri())


# the columns holding artifact locations; nothing else is touched (a param or a tag that happens to
# contain the old path is data, not a location)
_LOCATIONS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def _rewrite(con: sqlite3.Connection, old: str, root: Path) -> None:
    """Replace root ``old`` (a ``file://`` URI) by ``root`` at the start of every artifact location,
    and in dataset sources (JSON whose values are paths or URIs)."""
    prefixes = {f"{old}/": f"{root.as_uri()}/", f"{unquote(urlparse(old).path)}/": f"{root}/"}

    def moved(value: str | None) -> str | None:
        for before, after in prefixes.items():
            if value is not None and value.startswith(before):
                return after + value[len(before) :]
        return value

    def moved_source(text: str | None) -> str | None:
        try:
            source = json.loads(text)
        except (TypeError, ValueError):
            return text
        if not isinstance(source, dict):
            return text
        rerooted = {key: moved(value) if isinstance(value, str) else value for key, value in source.items()}
        return json.dumps(rerooted) if rerooted != source else text

    con.create_function("flywheel_moved", 1, moved, deterministic=True)
    con.create_function("flywheel_moved_source", 1, moved_source, deterministic=True)
    columns = _columns(con)
    for table, column in _LOCATIONS:
        if (table, column) in columns:
            con.execute(f'UPDATE "{table}" SET "{column}" = flywheel_moved("{column}")')
    if ("datasets", "dataset_source") in columns:
        con.execute("UPDATE datasets SET dataset_source = flywheel_moved_source(dataset_source)")


def _columns(con: sqlite3.Connection) -> set[tuple[str, str]]:
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {(table, column[1]) for table in tables for column in con.execute(f'PRAGMA table_info("{table}")')}


def ensure_experiment(client, config: FlywheelConfig, workdir: Workdir, name: str) -> str:
    """The id of experiment ``name``, created (artifacts inside the workdir by default) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        from mlflow.exceptions import MlflowException

        location = workdir.artifacts.as_uri() if config.tracking.uri is None else None
        with contextlib.suppress(MlflowException):  # another process may have created it first
            client.create_experiment(name, artifact_location=location)
        experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_tags(config: FlywheelConfig, dataset: dict) -> dict[str, str]:
    tags = {
        "flywheel.config_hash": config_hash(config),
        "flywheel.dataset_id": dataset["dataset_id"],
        "flywheel.lake_batches": ",".join(dataset["lake_batches"]),
        "flywheel.sql_hash": dataset["sql_hash"],
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
