"""The rollout in the registry: one running rollout per model, as a tag on the registered model, so
every service replica (through its poller) and the loop see the same state; every decision (start,
promote, abort with its reason) is recorded as a numbered tag beside the alias moves and alerted.

A rollout puts a challenger version beside the champion:

- ``shadow``: the challenger scores every request off the response path; the champion answers.
- ``canary``: the challenger answers a sticky ``percent`` of entities (:func:`stats.in_slice`).
- ``ab``: as canary, a fixed split whose outcomes are compared per arm.
- ``bandit``: the split follows the arms' outcomes (Thompson sampling, ``rollout.floor`` per arm).

``shift`` changes a running rollout's mode or share (shadow → canary → a larger canary);
``promote`` makes the challenger the champion (the alias moves, with the rollout as its reason);
``abort`` ends the rollout and the champion serves alone again.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.lock import locks_workdir
from flywheel.monitoring.alerts import alert
from flywheel.registry import registry
from flywheel.registry.registry import RegistryError
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
MODES = ("shadow", "canary", "ab", "bandit")
TAG = "flywheel.rollout"
EVENT_PREFIX = "flywheel.rollout_event."
CHAMPION, CHALLENGER = "champion", "challenger"  # the arms


@dataclass(frozen=True)
class Rollout:
    id: str
    mode: str
    challenger: str  # the version on trial
    champion: str  # the champion when it started
    percent: float  # the challenger's share of entities (canary, ab); shadow: 100 (scores all)
    floor: float  # bandit: the least share any arm keeps
    started_at: str
    stage_started_at: str = ""  # when its mode or share last changed (a shift); start: started_at
    plan: tuple[str, ...] = ()  # the loop's stages still to come (``rollout.stages``), then promotion
    automatic: bool = False  # started by the loop, which moves it on (:func:`advance`)

    def describe(self) -> str:
        share = "" if self.mode in ("shadow", "bandit") else f" on {self.percent:g} % of entities"
        return f"rollout {self.id}: {self.mode} of v{self.challenger}{share} beside champion v{self.champion}"


def current(client: Any, name: str) -> Rollout | None:
    """The running rollout of model ``name``, if any.

    Raises:
        MlflowException: the registry cannot be read (down, locked): not the same as no rollout.
        RegistryError: a rollout tag this release cannot read (edited by hand, or by another release).
    """
    tags = _tags(client, name)
    if not tags.get(TAG):
        return None
    try:
        fields = json.loads(tags[TAG])
        return Rollout(**{**fields, "plan": tuple(fields.get("plan", ()))})
    except (ValueError, TypeError) as error:
        raise RegistryError(
            f"{name}'s {TAG} tag is not a rollout this release can read ({error}); "
            f"delete the tag to end it: {tags[TAG][:200]}"
        ) from None


def events(client: Any, name: str) -> list[dict[str, Any]]:
    """Every recorded rollout decision of model ``name``, oldest first."""
    tags = _tags(client, name)
    return sorted(
        (json.loads(v) for k, v in tags.items() if k.startswith(EVENT_PREFIX)),
        key=lambda e: (e["seq"], e["at"]),
    )


@locks_workdir("rollout start")
def start(
    config: FlywheelConfig,
    workdir: Workdir,
    mode: str,
    version: str | None = None,
    percent: float | None = None,
    plan: tuple[str, ...] = (),
    automatic: bool = False,
) -> Rollout:
    """Start a rollout of ``version`` (default: the ``challenger`` alias) beside the champion; an
    ``automatic`` one (the loop's) moves through the modes of ``plan`` (:func:`advance`) and promotes.

    Raises:
        RegistryError: another rollout is running, there is no champion or no such version, the
            version is the champion or failed its quality gate, or the mode or percent is invalid.
    """
    _check(mode, percent)
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    running = current(client, name)
    if running is not None:
        raise RegistryError(
            f"{running.describe()} is running; `flywheel rollout promote` or `abort` it first"
        )
    champion = registry.alias_version(client, name, registry.CHAMPION)
    if champion is None:
        raise RegistryError(f"{name} has no champion to roll out beside; promote a first version")
    version = version or registry.alias_version(client, name, registry.CHALLENGER)
    if version is None:
        raise RegistryError(f"{name} has no challenger; name a version with --version")
    registry.require_version(client, name, version)
    if version == champion:
        raise RegistryError(f"version {version} is the champion already")
    if not registry.gate_passed(client, name, version):
        raise RegistryError(f"version {version} failed its quality gate; it cannot serve traffic")
    now = datetime.now(UTC)
    rollout = Rollout(
        id=f"r{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}-v{version}",  # two in a second differ too
        mode=mode,
        challenger=version,
        champion=champion,
        percent=100.0 if mode == "shadow" else float(percent or config.rollout.percent),
        floor=config.rollout.floor,
        started_at=now.isoformat(),
        stage_started_at=now.isoformat(),
        plan=tuple(plan),
        automatic=automatic,
    )
    client.set_registered_model_tag(name, TAG, json.dumps(asdict(rollout)))
    _record(config, workdir, client, name, rollout, "start", f"started: {rollout.describe()}")
    return rollout


@locks_workdir("rollout shift")
def shift(
    config: FlywheelConfig, workdir: Workdir, mode: str | None = None, percent: float | None = None
) -> Rollout:
    """Change the running rollout's mode or share (e.g. shadow → canary, canary 10 → 50 %); it keeps
    its id, so a canary's growing slice keeps the entities it had.

    Raises:
        RegistryError: no rollout is running, or the mode or percent is invalid or changes nothing.
    """
    client, name, rollout = _running(config, workdir)
    mode = mode or rollout.mode
    _check(mode, percent)
    if mode == "shadow":
        share = 100.0
    elif percent is not None:
        share = float(percent)
    else:  # from shadow (which scores all): the configured share; otherwise the share it had
        share = float(config.rollout.percent) if rollout.mode == "shadow" else rollout.percent
    if (mode, share) == (rollout.mode, rollout.percent):
        raise RegistryError(f"{rollout.describe()} already; name another --mode or --percent")
    # by hand: the rollout is the user's now, the loop no longer moves it on
    return _shift(config, workdir, client, name, replace(rollout, automatic=False), mode, share, ())


def _shift(
    config: FlywheelConfig,
    workdir: Workdir,
    client: Any,
    name: str,
    rollout: Rollout,
    mode: str,
    share: float,
    plan: tuple[str, ...],
) -> Rollout:
    now = datetime.now(UTC).isoformat()
    shifted = replace(rollout, mode=mode, percent=share, stage_started_at=now, plan=tuple(plan))
    _still(client, name, rollout)
    client.set_registered_model_tag(name, TAG, json.dumps(asdict(shifted)))
    _record(
        config,
        workdir,
        client,
        name,
        shifted,
        "shift",
        f"shifted from {rollout.mode}{_share(rollout)} to {mode}{_share(shifted)}: {shifted.describe()}",
    )
    return shifted


def _still(client: Any, name: str, rollout: Rollout) -> None:
    """Raise unless ``rollout`` is still the one running: a replica's guard may have aborted it
    since it was read (a guard does not take the workdir's lock)."""
    running = current(client, name)
    if running is None or running.id != rollout.id:
        raise RegistryError(
            f"{rollout.id} ended meanwhile (a guard aborted it?); see `flywheel rollout status`"
        )


def _share(rollout: Rollout) -> str:
    return f" {rollout.percent:g} %" if rollout.mode in ("canary", "ab") else ""


def _check(mode: str, percent: float | None) -> None:
    if mode not in MODES:
        raise RegistryError(f"unknown rollout mode {mode!r}; expected one of {', '.join(MODES)}")
    if percent is not None and not 0 < percent <= 100:
        raise RegistryError(f"--percent {percent:g}: expected a share of entities above 0 and at most 100")


@locks_workdir("rollout promote")
def promote(config: FlywheelConfig, workdir: Workdir) -> Rollout:
    """End the running rollout by making its challenger the champion."""
    client, name, rollout = _running(config, workdir)
    champion = registry.alias_version(client, name, registry.CHAMPION)
    if champion != rollout.champion:  # someone moved the alias meanwhile: the trial compared another
        raise RegistryError(
            f"the champion is v{champion} now, not v{rollout.champion} that {rollout.id} compared with; "
            "`flywheel rollout abort` it"
        )
    reason = f"rollout {rollout.id} ({rollout.mode}) promoted"
    _still(client, name, rollout)
    registry.move_alias(client, name, registry.CHAMPION, rollout.challenger, reason)
    client.delete_registered_model_tag(name, TAG)
    _record(
        config,
        workdir,
        client,
        name,
        rollout,
        "promote",
        f"promoted v{rollout.challenger}: {rollout.describe()}",
    )
    return rollout


@locks_workdir("rollout abort")
def abort(config: FlywheelConfig, workdir: Workdir, reason: str = "aborted by hand") -> Rollout:
    """End the running rollout; the champion serves alone again."""
    client, _, rollout = _running(config, workdir)
    end(config, workdir, client, rollout, reason)
    return rollout


def end(config: FlywheelConfig, workdir: Workdir, client: Any, rollout: Rollout, reason: str) -> bool:
    """Abort ``rollout`` if it is still the one running; returns whether it was. A service's guard
    calls this without the workdir's lock (a reader never takes it, and a long pipeline run may hold
    it): only the registry's tags and the alert are written."""
    name = config.registry.model_name
    running = current(client, name)
    if running is None or running.id != rollout.id:  # ended or replaced meanwhile
        return False
    client.delete_registered_model_tag(name, TAG)
    _record(
        config, workdir, client, name, running, "abort", f"aborted ({reason}): {running.describe()}", reason
    )
    return True


@locks_workdir("rollout advance")
def advance(config: FlywheelConfig, workdir: Workdir, predictions: int) -> str | None:
    """Move the loop's rollout on once its stage has run ``rollout.stage_minutes`` and the challenger
    made ``predictions`` (counted by the caller since the stage started) of at least
    ``rollout.stage_predictions``: to the plan's next mode, or to promotion after the last. Returns
    what it did, or None (no loop rollout, or its stage is not done)."""
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    rollout = current(client, name)
    if rollout is None or not rollout.automatic:
        return None
    ran = datetime.now(UTC) - datetime.fromisoformat(rollout.stage_started_at)
    settings = config.rollout
    if ran.total_seconds() < settings.stage_minutes * 60 or predictions < settings.stage_predictions:
        return None
    if not rollout.plan:
        promote(config, workdir)
        return f"promoted v{rollout.challenger} after {rollout.mode}"
    mode, *rest = rollout.plan
    share = 100.0 if mode == "shadow" else float(settings.percent)
    shifted = _shift(config, workdir, client, name, rollout, mode, share, tuple(rest))
    return f"shifted to {shifted.mode}"


def _tags(client: Any, name: str) -> dict[str, str]:
    """The registered model's tags; none when the model is not registered yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name).tags
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def _running(config: FlywheelConfig, workdir: Workdir) -> tuple[Any, str, Rollout]:
    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    rollout = current(client, name)
    if rollout is None:
        raise RegistryError(f"{name} has no rollout running; start one with `flywheel rollout start`")
    return client, name, rollout


def _record(
    config: FlywheelConfig,
    workdir: Workdir,
    client: Any,
    name: str,
    rollout: Rollout,
    action: str,
    text: str,
    reason: str | None = None,
) -> None:
    seq = len(events(client, name)) + 1
    now = datetime.now(UTC)
    event = {"seq": seq, "at": now.isoformat(), "action": action, "reason": reason, **asdict(rollout)}
    # two writers at once (a replica's guard, the loop) count the same seq: the key never collides
    key = f"{EVENT_PREFIX}{seq:05d}.{now:%Y%m%dT%H%M%S%f}.{secrets.token_hex(2)}"
    client.set_registered_model_tag(name, key, json.dumps(event))
    alert(config, workdir, "rollout", f"{name} {text}", action=action, rollout=rollout.id, reason=reason)
