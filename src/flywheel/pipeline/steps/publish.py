"""``publish``: the last act of a successful run — the online store takes the new snapshots (and the
repo's definitions, when they changed), then the aliases move: ``challenger`` to the new version
(it passed the gate) and ``champion`` too if ``promote`` said so — or, with ``rollout.stages``
configured and a champion serving, the winner starts the loop's rollout through those stages
instead. Nothing before this step changes what is served. A champion that moved since ``promote``
compared against it (a rollback, another run) stops the step before anything is written: the
decision is stale."""

from __future__ import annotations

from flywheel.features import online
from flywheel.pipeline.context import StepContext
from flywheel.registry import registry
from flywheel.rollout import state as rollout_state


class StaleDecision(registry.RegistryError):
    """The champion is no longer the version the promotion decision compared against."""


def run(ctx: StepContext, version: str, promote: str, reason: str, champion: str) -> dict[str, str]:
    client = registry.mlflow_client(ctx.config, ctx.workdir)
    name = ctx.config.registry.model_name
    current = registry.alias_version(client, name, registry.CHAMPION) or ""
    if current != champion:
        raise StaleDecision(
            f"the champion is v{current or ' (none)'} now, not v{champion or ' (none)'} that version "
            f"{version} was compared with; nothing published — rerun the pipeline"
        )
    applied, materialized = online.publish(ctx.config, ctx.workdir)
    registry.move_alias(
        client, name, registry.CHALLENGER, version, "passed the quality gate", ctx.pipeline_run_id
    )
    started = ""
    running = rollout_state.current(client, name) if promote == "true" else None
    if running is not None and not running.automatic:  # the user's own trial is not cut short
        promote = "false"
        reason += f"; not promoted while {running.describe()} (started by hand) runs"
    else:
        if running is not None:  # the loop's rollout of an earlier winner: superseded
            rollout_state.end(ctx.config, ctx.workdir, client, running, f"superseded by v{version}")
        if promote == "true" and ctx.config.rollout.stages and current:
            first, *rest = ctx.config.rollout.stages
            rollout = rollout_state.start(
                ctx.config, ctx.workdir, first, version, plan=tuple(rest), automatic=True
            )
            promote, started = "false", rollout.id
            reason += f"; rolling out before it becomes champion: {rollout.describe()}"
    if promote == "true":
        registry.move_alias(client, name, registry.CHAMPION, version, reason, ctx.pipeline_run_id)
        current = version
    return {
        "promoted": promote,
        "reason": reason,
        "rollout": started,
        "champion": current,
        "applied": ", ".join(applied),
        "materialized": str(materialized.written),
        "through": materialized.through or "",
    }
