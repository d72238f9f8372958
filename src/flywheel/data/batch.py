"""A batch: what the lake commits atomically, whatever the use case."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from flywheel.errors import DataError

if TYPE_CHECKING:  # the use-case spec imports this module
    from flywheel.usecases.spec import Quarantine


@dataclass
class Batch:
    """Raw tables for one period. Synthetic batches also carry the generator's latent state at the
    period end (``state``) and its bookkeeping (``generator``: seed, next ids, ...), which the next
    simulated batch continues from; ingested batches name their ``sources`` and, for files a use case
    reads in its own layout, the rows its reader quarantined (``quarantine``: source → report)."""

    batch_id: str
    kind: Literal["generate", "simulate", "ingest"]
    period_start: datetime
    period_end: datetime
    tables: dict[str, pa.Table]
    state: pa.Table | None = None
    generator: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)
    quarantine: dict[str, Quarantine] = field(default_factory=dict)


def check_continuation(
    name: str,
    drift: str,
    scenarios: Iterable[str],
    days: int,
    generator: dict[str, Any],
    state: pa.Table,
    version: str,
    state_schema: pa.Schema,
) -> None:
    """What a generator's ``simulate`` checks before it continues a previous batch: a known drift
    scenario, a positive length, and state and bookkeeping of its own version.

    Raises:
        DataError: naming what is wrong and what was expected.
    """
    scenarios = list(scenarios)
    if drift not in scenarios:
        raise DataError(f"unknown drift scenario '{drift}'; expected one of: {', '.join(scenarios)}")
    if days < 1:
        raise DataError(f"days must be at least 1, got {days}")
    if generator.get("version") != version or state.schema.names != state_schema.names:
        raise DataError(
            f"the previous batch was made by {name} generator version {generator.get('version')!r} "
            f"with state columns {state.schema.names}; expected version {version}"
        )
