"""A batch: what the lake commits atomically, whatever the use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

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
