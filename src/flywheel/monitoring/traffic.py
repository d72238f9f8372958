"""``flywheel simulate traffic``: score entities through the prediction service over simulated days.

Each snapshot date inside the window is one simulated day: a sample of that day's snapshot rows (those
the use case's ``api.population`` selects, e.g. its label population) is sent to ``/v1/score`` with
their features as of that date and ``as_of`` set to it. For event labels (one per contact) each day
sends a sample of that day's label rows, with the features the training set would join at their
times. Either way the prediction log holds predictions whose ground truth newer lake data reveals —
without waiting for real time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.features import dataset, labels, snapshots
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
    """Send ``per_date`` predictions for each day in ``(end - days, end]`` to ``url``: rows of the
    snapshot dates for labels on the grid, label rows (e.g. contacts) of each day for event labels."""
    features = call(f"{url}/v1/model")["features"]
    days_rows = (_event_days if config.labels.cadence_days is None else _snapshot_days)(
        config, workdir, days, end
    )
    key = config.spec.entity.join_key
    rng = np.random.default_rng(seed)
    samples = [(day, frame.iloc[rng.permutation(len(frame))[:per_date]]) for day, frame in days_rows]
    if config.labels.cadence_days is None:  # the features as training joins them, at each row's time
        rows = pa.Table.from_pandas(pd.concat([frame for _, frame in samples]), preserve_index=False)
        joined = dataset.with_features(config, workdir, rows).to_pandas()
        ends = np.cumsum([len(frame) for _, frame in samples])
        samples = [
            (day, joined.iloc[end - len(frame) : end])
            for (day, frame), end in zip(samples, ends, strict=True)
        ]
    result = TrafficResult()
    for day, sample in samples:
        rows = sample[features].astype(object).where(sample[features].notna(), None).to_dict("records")
        for entity, row, when in zip(sample[key], rows, sample["_as_of"], strict=True):
            answer = call(
                f"{url}/v1/score", {key: _plain(entity), "features": row, "as_of": when.isoformat()}
            )
            result.versions[answer["model_version"]] += 1
        result.dates.append(day)
        result.requests += len(rows)
        if on_date:
            on_date(day, len(rows))
    return result


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _snapshot_days(
    config: FlywheelConfig, workdir: Workdir, days: int, end: date | None
) -> list[tuple[str, pd.DataFrame]]:
    """The snapshot rows of each built date in the window (those ``api.population`` selects)."""
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
    population = config.spec.api.population
    out = []
    for day in chosen:
        frame = pq.read_table(snapshots.table_dir(workdir) / manifest["dates"][day]["file"]).to_pandas()
        frame = frame.query(population) if population else frame
        out.append((day, frame.assign(_as_of=frame[snapshots.TIMESTAMP_COLUMN])))
    return out


def _event_days(
    config: FlywheelConfig, workdir: Workdir, days: int, end: date | None
) -> list[tuple[str, pd.DataFrame]]:
    """The label rows (e.g. contacts) of each day in the window, without their labels."""
    rows = labels.current(config, workdir).drop_columns([config.labels.label_column]).to_pandas()
    if rows.empty:
        raise FlywheelError("no label rows to send; run `flywheel features build` first")
    when = rows[labels.TIMESTAMP_COLUMN]
    last = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1) if end else when.max()
    rows = rows[(when > last - pd.Timedelta(days=days)) & (when <= last)]
    if rows.empty:
        raise FlywheelError(f"no label rows in the {days} days up to {last:%Y-%m-%d}")
    rows = rows.assign(_as_of=rows[labels.TIMESTAMP_COLUMN])
    return [
        (f"{day:%Y-%m-%d}", frame) for day, frame in rows.groupby(rows["_as_of"].dt.floor("D"), sort=True)
    ]
