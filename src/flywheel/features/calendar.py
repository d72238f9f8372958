"""Snapshot and label dates: a fixed grid (anchor ± k·cadence, UTC midnight) inside the data's range."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta


def grid_dates(anchor: date, cadence_days: int, first: datetime, last: datetime) -> list[datetime]:
    """Grid dates ``d`` with ``first <= d <= last``; the grid does not move when data is added."""
    origin = datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC)
    step = timedelta(days=cadence_days)
    k = math.ceil((first - origin) / step)
    dates = []
    moment = origin + k * step
    while moment <= last:
        dates.append(moment)
        moment += step
    return dates
