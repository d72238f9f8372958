"""The prediction service's state: the served model, the online store, the prediction log, the
metrics, and the champion check that hot-swaps the model."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from flywheel.config import FlywheelConfig
from flywheel.features import snapshots
from flywheel.registry import registry
from flywheel.registry.versions import LoadedModel, load_version
from flywheel.serving.metrics import Metrics
from flywheel.serving.online_features import OnlineFeatures
from flywheel.serving.predlog import PredictionLog
from flywheel.serving.schemas import Bodies
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
# what a tracking store or server that is down, locked or unreachable raises
REGISTRY_ERRORS = (MlflowException, SQLAlchemyError, sqlite3.Error, OSError)


@dataclass
class State:
    config: FlywheelConfig
    workdir: Workdir
    metrics: Metrics
    model: LoadedModel | None = None
    online: OnlineFeatures | None = None
    log: PredictionLog | None = None
    client: Any = None  # one MLflow client for the poller: building one costs a tracking-store setup
    champion: str | None = None  # the version the alias pointed at when last checked
    last_error: str | None = None
    data_start: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    bands: list[tuple[float, str]] = field(default_factory=list)
    bodies: Bodies | None = None  # the use case's request/response names, set once by create_app


async def check_champion(state: State) -> bool:
    """Load the champion if its alias moved; returns whether the served model changed.

    Errors shown to clients (``/ready``, ``/v1/model``) name the version and the kind of failure,
    never a path or a library's message; the service log has the details."""
    loop = asyncio.get_running_loop()
    name = state.config.registry.model_name
    try:
        if state.client is None:
            state.client = await loop.run_in_executor(
                None, registry.mlflow_client, state.config, state.workdir
            )
        version = await loop.run_in_executor(
            None, registry.alias_version, state.client, name, registry.CHAMPION
        )
    except REGISTRY_ERRORS as error:  # the registry is unreachable: keep serving what we have
        _logger.error("registry unreachable: %s", error)
        state.last_error = f"registry unreachable ({type(error).__name__}); serving the loaded model"
        return False
    state.champion = version
    if version is None:
        if state.model is None:
            state.last_error = f"no {name}@champion to serve yet"
        return False
    if state.model is not None and version == state.model.version:
        state.last_error = None  # e.g. the alias came back after a version that failed to load
        return False
    try:
        loaded = await loop.run_in_executor(None, load_version, state.config, state.workdir, version)
    except Exception as error:  # a broken version fails in any library's way; the old one keeps serving
        state.metrics.reload_failures.inc()
        _logger.error("version %s failed to load: %s", version, error, exc_info=error)
        serving = f"; serving v{state.model.version}" if state.model else ""
        state.last_error = f"version {version} failed to load ({type(error).__name__}){serving}"
        return False
    if state.model is not None:
        state.metrics.model_info.remove(state.model.version)
        state.metrics.reloads.inc()
    state.model, state.last_error = loaded, None  # one reference swap: in-flight requests keep the old model
    state.metrics.model_info.labels(loaded.version).set(1)
    _logger.info("serving %s v%s", name, loaded.version)
    return True


def data_start(workdir: Workdir) -> datetime:
    """The first feature snapshot's date: no served data time can be older."""
    manifest = snapshots.read_manifest(workdir)
    if not manifest or not manifest.get("dates"):
        return datetime(1970, 1, 1, tzinfo=UTC)
    return datetime.fromisoformat(min(manifest["dates"])).replace(tzinfo=UTC)
