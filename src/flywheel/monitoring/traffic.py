"""``flywheel simulate traffic``: score entities through the prediction service over simulated days.

Each snapshot date inside the window is one simulated day: a sample of that day's snapshot rows (those
the use case's ``api.population`` selects, e.g. its label population) is sent to ``/v1/score`` with their
features as of that date and ``as_of`` set to it, so the prediction log holds predictions whose
ground truth newer lake data reveals — without waiting for real time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.features import snapshots
from flywheel.serving.local import call
from flywheel.workdir import Workdir


@dataclass
class TrafficResult:
    dates: list[str] = field(default_factory=list)
    requests: int = 0
    versions: Counter = field(default_factory=Counter)


def simulate(
    config: FlywheelConfig,
    workdir: Workdir,
    url: str,
    days: int = 84,
    per_date: int = 200,
    end: date | None = None,
    seed: int = 0,
    on_date: Callable[[str, int], None] | None = None,
) -> TrafficResult:
    """Send ``per_date`` predictions for each snapshot date in ``(end - days, end]`` to ``url``."""
    manifest = snapshots.read_manifest(workdir)
    if not manifest or not manifest["dates"]:
        raise FlywheelError("no feature snapshots; run `flywheel features build` first")
    built = sorted(manifest["dates"])
    last = end.isoformat() if end else built[-1]
    first = (date.fromisoformat(last) - timedelta(days=days)).isoformat()
    chosen = [d for d in built if first < d <= last]
    if not chosen:
        raise FlywheelError(
            f"no snapshot dates in ({first}, {last}]; built dates run {built[0]} … {built[-1]}"
        )
    features = call(f"{url}/v1/model")["features"]
    key, population = config.spec.entity.join_key, config.spec.api.population
    rng = np.random.default_rng(seed)
    result = TrafficResult()
    for day in chosen:
        path = snapshots.table_dir(workdir) / manifest["dates"][day]["file"]
        frame = pq.read_table(path).to_pandas()
        active = frame.query(population) if population else frame
        sample = active.iloc[rng.permutation(len(active))[:per_date]]
        rows = sample[features].astype(object).where(sample[features].notna(), None).to_dict("records")
        timestamps = sample[snapshots.TIMESTAMP_COLUMN]
        for entity, row, when in zip(sample[key], rows, timestamps, strict=True):
            answer = call(f"{url}/v1/score", {key: int(entity), "features": row, "as_of": when.isoformat()})
            result.versions[answer["model_version"]] += 1
        result.dates.append(day)
        result.requests += len(rows)
        if on_date:
            on_date(day, len(rows))
    return result
