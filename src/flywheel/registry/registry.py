"""Versions of the registered model, their gates, and the ``challenger``/``champion`` aliases.

Aliases replace MLflow's deprecated stages. Every alias move is recorded as a registered-model tag
``alias_move.<n>`` holding JSON (when, alias, from version, to version, why, by which run), which
``describe`` shows and ``rollback`` reads. A failed gate never moves an alias.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.lock import locks_workdir
from flywheel.registry.gates import GateCheck, evaluate_gates, folder_size_mb, single_row_latency_p99_ms
from flywheel.registry.versions import load_version
from flywheel.training import evaluation, tracking
from flywheel.training.train import load_logged_model
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_NAMES = {"roc_auc": "ROC-AUC", "macro_f1": "macro-F1"}  # as decisions have always read
MOVE_PREFIX = "alias_move."


class RegistryError(FlywheelError):
    """A registry request that cannot be honoured (unknown version, nothing to roll back to, …)."""


@dataclass(frozen=True)
class Registration:
    version: str
    gate_passed: bool
    checks: list[GateCheck]


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    version: str
    previous: str | None
    comparison: dict[str, float] | None = None


def mlflow_client(config: FlywheelConfig, workdir: Workdir):
    """An MLflow client on the configured tracking store and registry."""
    from mlflow import MlflowClient

    tracking.setup(config, workdir)
    return MlflowClient()


def alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def version_run(client: Any, name: str, version: str) -> Any:
    """The MLflow run that trained ``version`` (its tags name the dataset and the lake batches)."""
    return client.get_run(client.get_model_version(name, version).run_id)


def champion_version(config: FlywheelConfig, workdir: Workdir) -> str | None:
    """The version the ``champion`` alias points at, or None."""
    return alias_version(mlflow_client(config, workdir), config.registry.model_name, CHAMPION)


def history(client: Any, name: str) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return []
    moves = [json.loads(v) for k, v in model.tags.items() if k.startswith(MOVE_PREFIX)]
    return sorted(moves, key=lambda m: m["seq"])


def move_alias(
    client: Any, name: str, alias: str, version: str, reason: str, run_id: str | None = None
) -> None:
    """Point ``alias`` at ``version`` and record the move."""
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    seq = len(history(client, name)) + 1
    move = {
        "seq": seq,
        "at": datetime.now(UTC).isoformat(),
        "alias": alias,
        "from": previous,
        "to": version,
        "reason": reason,
        "run_id": run_id,
    }
    client.set_registered_model_tag(name, f"{MOVE_PREFIX}{seq:05d}", json.dumps(move))
    _logger.info("%s: %s %s → %s (%s)", name, alias, previous, version, reason)


def _run_test_split(workdir: Workdir, run: Any) -> Path:
    """The test split of the dataset a training run read (its ``dataset_id``), never the LATEST pointer."""
    dataset_id = run.data.params.get("dataset_id") or run.data.tags.get("flywheel.dataset_id")
    path = workdir.datasets / str(dataset_id) / "test.parquet"
    if not dataset_id or not path.exists():
        raise RegistryError(f"run {run.info.run_id}'s dataset {dataset_id} is not in {workdir.datasets}")
    return path


@locks_workdir("model register")
def register(
    config: FlywheelConfig,
    workdir: Workdir,
    run_id: str,
    model_uri: str,
    metrics: dict[str, float] | None = None,
    test: Path | None = None,
    challenger: bool = True,
) -> Registration:
    """Run the quality gate on a trained candidate and register it with the gate's result as version
    tags (one registry write: a kill cannot leave a version without its gate); a passing candidate
    becomes the ``challenger`` (unless ``challenger`` is false: the pipeline moves it when it publishes).

    The gate takes the ``eval`` step's test ``metrics`` (at the run's threshold) and times the serving
    path on rows of the ``test`` split; both default to what the run itself recorded."""
    import mlflow

    client = mlflow_client(config, workdir)
    name = config.registry.model_name
    run = client.get_run(run_id)
    if metrics is None:
        metrics = {k.removeprefix("test_"): v for k, v in run.data.metrics.items() if k.startswith("test_")}
    if "roc_auc" not in metrics:
        raise RegistryError(f"run {run_id} has no test metrics; evaluate it first (the eval step)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        size = folder_size_mb(folder)
        model = load_logged_model(folder)
    split = pq.ParquetFile(test or _run_test_split(workdir, run))
    rows = next(split.iter_batches(batch_size=200, columns=model.features)).to_pylist()
    latency = single_row_latency_p99_ms(model.predict_records, rows)
    checks = evaluate_gates(config.registry.gates, metrics, latency, size)
    passed = all(c.passed for c in checks)
    tags = {
        "gate.passed": str(passed).lower(),
        "run_id": run_id,
        "model_type": run.data.params.get("model_type", ""),
        "dataset_id": run.data.params.get("dataset_id", ""),
    }
    for check in checks:
        tags[f"gate.{check.name}.value"] = f"{check.value:.6g}"
        tags[f"gate.{check.name}.threshold"] = f"{check.threshold:.6g}"
        tags[f"gate.{check.name}.passed"] = str(check.passed).lower()
    version = str(mlflow.register_model(model_uri, name, tags=tags).version)
    if passed and challenger:
        move_alias(client, name, CHALLENGER, version, "passed the quality gate", run_id)
    elif not passed:
        failed = ", ".join(
            f"{c.name}={c.value:.4g} (bound {c.threshold:.4g})" for c in checks if not c.passed
        )
        _logger.warning("version %s failed the quality gate: %s; no alias moved", version, failed)
    return Registration(version, passed, checks)


def gate_passed(client: Any, name: str, version: str) -> bool:
    return client.get_model_version(name, version).tags.get("gate.passed") == "true"


def test_probabilities(config: FlywheelConfig, workdir: Workdir, version: str, test: Path) -> pd.DataFrame:
    """A registered version's probabilities on a test split, with the split's keys and labels."""
    model = load_version(config, workdir, version).model
    label = json.loads((Path(test).parent / "metadata.json").read_text())["label_column"]
    frame = pq.read_table(test).to_pandas()
    p = model.predict_proba(frame[model.features])
    return frame.assign(label=frame[label], **evaluation.probability_columns(p, "probability"))


def compare(
    config: FlywheelConfig, workdir: Workdir, candidate: pd.DataFrame, champion: str, test: Path
) -> dict[str, float]:
    """How much better the candidate is than the champion on ``registry.compare_metric`` (a loss:
    lower by) on the same test rows, with a paired bootstrap interval.

    ``candidate`` holds the candidate's test probabilities (the ``eval`` step's output, in the split's
    row order); only the champion is scored here, once."""
    old = test_probabilities(config, workdir, champion, test)
    if len(old) != len(candidate) or not (old["label"].to_numpy() == candidate["label"].to_numpy()).all():
        raise RegistryError(f"the candidate's probabilities do not belong to the test split {test}")
    new_p = evaluation.read_probabilities(candidate, "probability")
    old_p = evaluation.read_probabilities(old, "probability")
    if new_p.shape != old_p.shape:
        raise RegistryError(
            f"the candidate scores {new_p.shape[1:] or 'one'} class column(s), the champion v{champion} "
            f"{old_p.shape[1:] or 'one'}: they do not predict the same task"
        )
    return evaluation.bootstrap_difference(
        candidate["label"].to_numpy(),
        new_p,
        old_p,
        config.registry.bootstrap_samples,
        config.registry.confidence,
        seed=config.training.seed,
        metric=config.registry.compare_metric,
    )


def decide(
    config: FlywheelConfig,
    workdir: Workdir,
    version: str,
    force: bool = False,
    automatic: bool = False,
    candidate: pd.DataFrame | None = None,
    test: Path | None = None,
) -> PromotionDecision:
    """The promotion policy for ``version``; moves nothing (:func:`promote` or the pipeline's
    ``publish`` step acts on it).

    Promote when its gate passed and either there is no champion yet, or it beats the champion by at
    least ``min_delta`` on ``registry.compare_metric`` with the bootstrap interval above zero, on the
    ``test`` split (default: the split the version was evaluated on) with the ``candidate``'s
    probabilities (default: scored here). ``force`` skips the comparison (never the gate).
    ``automatic`` (the pipeline) under ``registry.promotion: manual`` compares and reports but leaves
    the alias to ``flywheel model promote``."""
    client = mlflow_client(config, workdir)
    name = config.registry.model_name
    require_version(client, name, version)
    champion = alias_version(client, name, CHAMPION)
    if not gate_passed(client, name, version):
        return PromotionDecision(False, f"version {version} did not pass the quality gate", version, champion)
    if champion == version:
        return PromotionDecision(False, f"version {version} is already the champion", version, champion)
    if champion is None or force:
        reason = "no champion yet" if champion is None else "promoted by hand (--force)"
        return PromotionDecision(True, reason, version, champion)
    if test is None:
        test = _run_test_split(workdir, version_run(client, name, version))
    if candidate is None:
        candidate = test_probabilities(config, workdir, version, test)
    result = compare(config, workdir, candidate, champion, test)
    beats = result["delta"] >= config.registry.min_delta and result["ci_low"] > 0
    metric = config.registry.compare_metric
    better = f"{metric} lower by" if metric in evaluation.LOSSES else metric
    reason = (
        f"{METRIC_NAMES.get(metric, better)} {result['delta']:+.4f} vs champion v{champion} "
        f"(CI {result['ci_low']:+.4f}..{result['ci_high']:+.4f}, needs ≥ {config.registry.min_delta:+.4f} "
        "with CI above 0)"
    )
    if beats and automatic and config.registry.promotion == "manual":
        reason += f"; promotion policy is manual: `flywheel model promote {version}` promotes it"
        return PromotionDecision(False, reason, version, champion, result)
    return PromotionDecision(beats, reason, version, champion, result)


@locks_workdir("model promote")
def promote(
    config: FlywheelConfig,
    workdir: Workdir,
    version: str | None = None,
    force: bool = False,
    run_id: str | None = None,
) -> PromotionDecision:
    """Apply the promotion policy to ``version`` (default: the challenger) and move ``champion`` when
    it says so: ``flywheel model promote``."""
    client = mlflow_client(config, workdir)
    name = config.registry.model_name
    version = version or alias_version(client, name, CHALLENGER)
    if version is None:
        raise RegistryError(f"{name} has no challenger to promote; train and register a candidate first")
    decision = decide(config, workdir, version, force=force)
    if decision.promoted:
        move_alias(client, name, CHAMPION, version, decision.reason, run_id)
    return decision


@locks_workdir("model rollback")
def rollback(config: FlywheelConfig, workdir: Workdir, reason: str = "rollback") -> tuple[str, str]:
    """Move ``champion`` back to the version it pointed at before its last move."""
    client = mlflow_client(config, workdir)
    name = config.registry.model_name
    current = alias_version(client, name, CHAMPION)
    moves = [m for m in history(client, name) if m["alias"] == CHAMPION and m["to"] == current]
    if current is None or not moves or moves[-1]["from"] is None:
        raise RegistryError(f"{name} has no previous champion to roll back to")
    previous = moves[-1]["from"]
    move_alias(client, name, CHAMPION, previous, reason)
    return current, previous


def require_version(client: Any, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"{name} has no version {version}") from None


def list_versions(config: FlywheelConfig, workdir: Workdir) -> list[dict[str, Any]]:
    client = mlflow_client(config, workdir)
    name = config.registry.model_name
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    rows = []
    for found in sorted(versions, key=lambda found: int(found.version)):
        v = client.get_model_version(name, found.version)  # search results leave aliases out
        rows.append(
            {
                "version": str(v.version),
                "aliases": list(v.aliases),
                "gate_passed": v.tags.get("gate.passed"),
                "model_type": v.tags.get("model_type"),
                "roc_auc": v.tags.get("gate.roc_auc.value"),
                "run_id": v.run_id,
                "created": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC),
            }
        )
    return rows


def describe(config: FlywheelConfig, workdir: Workdir, version: str) -> dict[str, Any]:
    client = mlflow_client(config, workdir)
    name = config.registry.model_name
    require_version(client, name, version)
    v = client.get_model_version(name, version)
    moves = [m for m in history(client, name) if version in (m["to"], m["from"])]
    return {
        "version": str(v.version),
        "aliases": list(v.aliases),
        "run_id": v.run_id,
        "source": v.source,
        "tags": dict(sorted(v.tags.items())),
        "alias_moves": moves,
    }
