"""``flywheel replay FILE``: feed a real file through the loop month by month, as it happened.

Seed 002's chain (new batch → retrain → redeploy, with simulated traffic and ground truth) on real
data: the file is read in the use case's own layout (``UseCase.read_file``) and cut by calendar
month of each table's time column. The first ``warmup_months`` are one batch that trains the first
champion. Then, for each later month: the month is ingested as a batch, the features are built, its
rows (label rows, e.g. contacts) are scored through the running service with the features a caller
would have had at their time (``/v1/score``, logged with the row's id and time), the outcomes the
month brought are the ground truth of those predictions, and one loop tick decides, retrains,
promotes and publishes (the wall-clock cooldown is off: months pass in seconds). The served
predictions of each month are scored against its outcomes, so performance over time is measured on
predictions made before the outcomes were known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import average_precision_score, roc_auc_score

from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.data import ops
from flywheel.data.batch import Batch
from flywheel.data.lake import Lake
from flywheel.errors import DataError
from flywheel.features import dataset, labels
from flywheel.features import ops as feature_ops
from flywheel.pipeline.runner import run_pipeline
from flywheel.registry import registry
from flywheel.retraining import loop
from flywheel.serving.local import call, local_service
from flywheel.serving.schemas import bodies
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)


@dataclass
class ReplayMonth:
    month: str
    rows: int
    positive_rate: float
    served_version: str | None
    roc_auc: float | None
    pr_auc: float | None
    decision: str  # promoted / kept / no retrain / failed
    reason: str
    champion_after: str | None
    seconds: float


@dataclass
class ReplayResult:
    warmup: str
    months: list[ReplayMonth] = field(default_factory=list)

    @property
    def mean_roc_auc(self) -> float | None:
        scores = [m.roc_auc for m in self.months if m.roc_auc is not None]
        return float(np.mean(scores)) if scores else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "mean_roc_auc": self.mean_roc_auc,
            "months": [asdict(m) for m in self.months],
        }


def split_months(usecase: Any, tables: dict[str, pa.Table]) -> dict[str, dict[str, pa.Table]]:
    """Each table's rows by calendar month (``YYYY-MM``) of its time column, months in order."""
    months: dict[str, dict[str, pa.Table]] = {}
    for name, table in tables.items():
        column = usecase.tables[name].time_column
        if column is None:
            raise DataError(f"table {name} has no time column; it cannot be replayed month by month")
        keys = pc.strftime(table.column(column), format="%Y-%m")
        for month in sorted(set(keys.to_pylist())):
            months.setdefault(month, {})[name] = table.filter(pc.equal(keys, month))
    return dict(sorted(months.items()))


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _batch(batch_id: str, months: list[tuple[str, dict[str, pa.Table]]], source: Path) -> Batch:
    names = {name for _, tables in months for name in tables}
    tables = {name: pa.concat_tables([t[name] for _, t in months if name in t]) for name in names}
    return Batch(
        batch_id=batch_id,
        kind="ingest",
        period_start=_month_bounds(months[0][0])[0],
        period_end=_month_bounds(months[-1][0])[1],
        tables=tables,
        sources=[str(source)],
    )


def replay(
    config: FlywheelConfig,
    workdir: Workdir,
    path: Path,
    warmup_months: int = 12,
    months: int | None = None,
    on_month: Callable[[ReplayMonth], None] | None = None,
) -> ReplayResult:
    """Replay ``path`` into an empty workdir: a warm-up batch and the first champion, then one
    month at a time (see the module docstring). ``months`` limits how many are replayed."""
    # months pass in seconds here: a wall-clock cooldown would block every retrain after the first
    config = apply_overrides(config, {"retrain.cooldown_hours": 0})
    spec = config.spec
    if spec.read_file is None:
        raise DataError(f"the {spec.name} use case reads no published file layout to replay")
    if not Lake(workdir, spec).is_empty():
        raise DataError(
            f"{workdir.lake} already holds data; a replay starts a new lake: use another --workdir"
        )
    published = spec.read_file(path)
    if published is None:
        raise DataError(f"{path}: not a file in the {spec.name} use case's published layout")
    tables = published.tables
    by_month = list(split_months(spec, tables).items())
    if len(by_month) <= warmup_months:
        raise DataError(f"{path} spans {len(by_month)} months: too few for a {warmup_months}-month warm-up")
    warmup, later = by_month[:warmup_months], by_month[warmup_months:][:months]
    result = ReplayResult(warmup=f"{warmup[0][0]} … {warmup[-1][0]}")
    ops.commit(
        spec, workdir, _batch(f"replay-{warmup[0][0]}-{warmup[-1][0]}", warmup, path), lake=config.lake
    )
    feature_ops.build(config, workdir)
    run_pipeline(config, workdir)
    if registry.champion_version(config, workdir) is None:
        raise DataError(
            f"the warm-up months {result.warmup} gave no champion (its version failed the quality gate: "
            "`flywheel model list`); replay with more --warmup-months or lower registry.gates"
        )
    served = apply_overrides(config, {"serving.poll_seconds": 1.0})
    with local_service(served, workdir) as url:
        for month, month_tables in later:
            started = time.perf_counter()
            ops.commit(spec, workdir, _batch(f"replay-{month}", [(month, month_tables)], path))
            feature_ops.build(config, workdir)
            _wait_for(url, registry.champion_version(config, workdir))
            rows, scores, version = _score_month(config, workdir, url, month)
            tick = loop.tick(config, workdir)
            decision = tick.decision
            champion = registry.champion_version(config, workdir)
            if not tick.ok:
                outcome, reason = "failed", f"{tick.failed_stage}: {tick.error}"
            elif decision is None or not decision.retrain:
                outcome, reason = "no retrain", "; ".join(decision.reasons) if decision else ""
            else:
                outcome = f"promoted v{champion}" if decision.promoted else f"kept v{champion}"
                reason = decision.promotion_reason or decision.error or ""
            truth = rows.column(config.labels.label_column).to_numpy()
            both = len(np.unique(truth)) == 2
            record = ReplayMonth(
                month=month,
                rows=rows.num_rows,
                positive_rate=float(truth.mean()) if len(truth) else 0.0,
                served_version=version,
                roc_auc=float(roc_auc_score(truth, scores)) if both else None,
                pr_auc=float(average_precision_score(truth, scores)) if both else None,
                decision=outcome,
                reason=reason,
                champion_after=champion,
                seconds=time.perf_counter() - started,
            )
            result.months.append(record)
            if on_month:
                on_month(record)
    return result


def _wait_for(url: str, version: str | None, seconds: float = 30.0) -> None:
    """Wait until the service serves ``version`` (its poller picks a promotion up within a second)."""
    deadline = time.monotonic() + seconds
    while call(f"{url}/v1/model")["version"] != version:
        if time.monotonic() > deadline:
            raise DataError(f"the service did not swap to v{version} within {seconds:.0f} s")
        time.sleep(0.2)


def _score_month(
    config: FlywheelConfig, workdir: Workdir, url: str, month: str
) -> tuple[pa.Table, np.ndarray, str | None]:
    """Send the month's label rows, with the features as of their times, through ``/v1/score``."""
    start, end = _month_bounds(month)
    rows = labels.current(config, workdir)
    when = rows.column(labels.TIMESTAMP_COLUMN)
    rows = rows.filter(
        pc.and_(pc.greater_equal(when, pa.scalar(start, when.type)), pc.less(when, pa.scalar(end, when.type)))
    )
    features = call(f"{url}/v1/model")["features"]
    joined = dataset.with_features(config, workdir, rows.drop_columns([config.labels.label_column]))
    key = bodies(config.spec).key
    scores, versions = [], set()
    frame = joined.select([key, labels.TIMESTAMP_COLUMN, *features]).to_pylist()
    for row in frame:
        body = {
            key: row.pop(key),
            "as_of": row.pop(labels.TIMESTAMP_COLUMN).isoformat(),
            "features": row,
        }
        answer = call(f"{url}/v1/score", body)
        scores.append(answer[config.spec.api.score_field])
        versions.add(answer["model_version"])
    return rows, np.array(scores), ", ".join(sorted(versions)) or None
