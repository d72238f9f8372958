"""The prediction service's state: the served model, the online store, the prediction log, the
metrics, and the refresh that opens the online store once it exists and hot-swaps the champion."""

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
from flywheel.features import repo, snapshots
from flywheel.registry import registry
from flywheel.registry.registry import RegistryError
from flywheel.registry.versions import LoadedModel, load_version
from flywheel.rollout import state as rollout_state
from flywheel.rollout.arms import ArmCounter, bandit_outcomes
from flywheel.rollout.guards import Watch
from flywheel.rollout.state import Rollout
from flywheel.rollout.stats import thompson_shares
from flywheel.serving.cache import PredictionCache, make_cache
from flywheel.serving.metrics import Metrics
from flywheel.serving.online_features import OnlineFeatures
from flywheel.serving.predlog import SHADOW, PredictionLog
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
    last_error: str | None = None  # why the champion is not (or not the one) served
    online_error: str | None = None  # why the online store is not open
    data_start: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    bands: list[tuple[float, str]] = field(default_factory=list)
    bodies: Bodies | None = None  # the use case's request/response names, set once by create_app
    rollout: Rollout | None = None  # the registry's running rollout, once its challenger is loaded
    challenger: LoadedModel | None = None  # the rollout's version on trial
    shares: dict[str, float] = field(default_factory=dict)  # bandit: each arm's share of requests
    watch: Watch | None = None  # what this replica served of the rollout's arms (the guards judge it)
    counter: ArmCounter | None = None  # the rollout's arms in the logs, with their outcomes
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)
    cache: PredictionCache | None = None  # scores of entities from their online rows (serving.cache)

    def __post_init__(self) -> None:
        self.cache = make_cache(self.config.serving.cache, self.metrics)


NOT_APPLIED = "online store not set up yet: no feature repo (run `flywheel features apply`)"


async def refresh(state: State) -> bool:
    """Open the online store if it is not open yet, then check the champion; returns whether the
    served model changed. Started on an empty workdir, the service becomes ready by these retries."""
    async with state.refreshing:  # the poller and an admin reload: one at a time, never interleaved
        if state.online is None:
            await open_online(state)
        changed = await check_champion(state)
        if state.client is not None:
            await check_rollout(state)
        return changed


async def check_rollout(state: State) -> None:
    """Follow the registry's rollout: load its challenger when it starts or changes, drop it when the
    rollout ends or a guard fires. A challenger that fails to load is not rolled out (the champion
    answers alone). Each arm's share is exported."""
    await _follow_rollout(state)
    rollout = state.rollout
    shares = {rollout_state.CHAMPION: 1.0, rollout_state.CHALLENGER: 0.0, SHADOW: 0.0}
    if rollout is not None and rollout.mode == "shadow":
        shares[SHADOW] = 1.0
    elif rollout is not None and rollout.mode == "bandit":
        shares.update(state.shares)
    elif rollout is not None:
        share = rollout.percent / 100
        shares.update({rollout_state.CHAMPION: 1 - share, rollout_state.CHALLENGER: share})
    for arm, share in shares.items():
        state.metrics.arm_share.labels(arm).set(share)


async def _follow_rollout(state: State) -> None:
    loop = asyncio.get_running_loop()
    try:
        rollout = await loop.run_in_executor(
            None, rollout_state.current, state.client, state.config.registry.model_name
        )
    except REGISTRY_ERRORS as error:  # unreachable: keep the arms as they are
        _logger.error("registry unreachable reading the rollout: %s", error)
        return
    except RegistryError as error:  # a tag this release cannot read: keep the arms too
        _logger.error("%s", error)
        return
    if rollout is None:
        state.rollout, state.challenger = None, None
        return
    if state.challenger is None or state.challenger.version != rollout.challenger:
        try:
            challenger = await loop.run_in_executor(
                None, load_version, state.config, state.workdir, rollout.challenger
            )
        except Exception as error:  # any library's failure: the champion keeps answering alone
            state.metrics.reload_failures.inc()
            _logger.error("challenger v%s of %s failed to load: %s", rollout.challenger, rollout.id, error)
            state.rollout, state.challenger = None, None
            return
        state.challenger = challenger
        _logger.info("rolling out v%s (%s)", challenger.version, rollout.describe())
    if state.counter is None or state.counter.rollout.id != rollout.id:
        state.counter = ArmCounter(state.workdir.predictions, rollout)
    if state.watch is None or state.watch.stage != (rollout.id, rollout.mode):  # a shift: judged anew
        state.watch = Watch((rollout.id, rollout.mode))
    reason = state.watch.verdict(state.config.rollout.guards)
    if reason is not None:
        await _abort(state, rollout, reason)
        return
    if rollout.mode == "bandit":  # the posteriors of the outcomes joined so far
        try:
            figures = await loop.run_in_executor(None, state.counter.update)
        except sqlite3.Error as error:  # a log locked or unreadable: the shares as they were
            _logger.warning("bandit: outcomes not counted this time: %s", error)
        else:
            state.shares = thompson_shares(bandit_outcomes(figures), rollout.floor)
        if not state.shares:  # nothing counted yet: the priors' even split
            arms = {rollout_state.CHAMPION: (0, 0), rollout_state.CHALLENGER: (0, 0)}
            state.shares = thompson_shares(arms, rollout.floor)
    state.rollout = rollout


async def _abort(state: State, rollout: Rollout, reason: str) -> None:
    """A guard fired: the champion answers alone at once; the registry's rollout ends (unless it
    ended or changed meanwhile), recorded and alerted, and every replica follows."""
    state.rollout, state.challenger = None, None
    _logger.warning("guard: aborting %s: %s", rollout.id, reason)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(
            None, rollout_state.end, state.config, state.workdir, state.client, rollout, f"guard: {reason}"
        )
    except REGISTRY_ERRORS as error:  # retried at the next poll: the watch still holds the verdict
        _logger.error("guard: the registry could not record the abort of %s: %s", rollout.id, error)


async def open_online(state: State) -> None:
    """Open the online store (Feast's registry must have been applied); on failure, record why for
    ``/ready`` and ``/v1/predict`` — in words without a path — and log it once per distinct error."""
    loop = asyncio.get_running_loop()
    if not repo.is_applied(state.workdir):
        state.online_error = NOT_APPLIED
        return
    try:
        state.online = await loop.run_in_executor(None, OnlineFeatures, state.config, state.workdir)
    except Exception as error:  # any backend's failure (Feast, Redis, a corrupt registry): retried
        reason = f"online store unavailable ({type(error).__name__}); see the service log"
        if reason != state.online_error:
            _logger.error("online store unavailable: %s", error)
        state.online_error = reason
        return
    state.online_error = None
    state.data_start = await loop.run_in_executor(None, data_start, state.workdir)


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
        serving = "serving the loaded model" if state.model is not None else "no model loaded yet"
        state.last_error = f"registry unreachable ({type(error).__name__}); {serving}"
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
    previous = state.model.version if state.model is not None else None
    if previous is not None:
        state.metrics.reloads.inc()
    state.model, state.last_error = loaded, None  # one reference swap: in-flight requests keep the old model
    state.metrics.served(loaded.version, previous)
    _logger.info("serving %s v%s", name, loaded.version)
    return True


def data_start(workdir: Workdir) -> datetime:
    """The first feature snapshot's date: no served data time can be older."""
    manifest = snapshots.read_manifest(workdir)
    if not manifest or not manifest.get("dates"):
        return datetime(1970, 1, 1, tzinfo=UTC)
    return datetime.fromisoformat(min(manifest["dates"])).replace(tzinfo=UTC)
