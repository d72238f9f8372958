"""A batch: what the lake commits atomically, whatever the use case."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa


@dataclass
class Batch:
    """Raw tables for one period. Synthetic batches also carry the generator's latent state at the
    period end (``state``) and its bookkeeping (``generator``: seed, next ids, ...), which the next
    simulated batch continues from; ingested batches name their ``sources``."""

    batch_id: str
    kind: Literal["generate", "simulate", "ingest"]
    period_start: datetime
    period_end: datetime
    tables: dict[str, pa.Table]
    state: pa.Table | None = None
    generator: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)
