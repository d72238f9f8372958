"""Online feature reads for serving, through Feast's online-store API (``OnlineStore.online_read``).

Flywheel guards what Feast does not: a snapshot older than the feature view's TTL (counted back from
the newest materialized snapshot, in data time, as of the latest materialization) is treated as
missing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.features import online, repo
from flywheel.serving.predlog import utc_iso
from flywheel.workdir import Workdir


class OnlineFeatures:
    def __init__(self, config: FlywheelConfig, workdir: Workdir):
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._entity_key, self._value = EntityKey, Value
        self.workdir = workdir
        entity = config.spec.snapshot.entity
        self.key, self._kind = entity.join_key, f"{entity.dtype}_val"
        self.store = repo.feature_store(workdir)
        self.view = self.store.get_feature_view(config.spec.snapshot.name)
        self.context_views = [self.store.get_feature_view(view.name) for view in config.spec.context]
        self.provider = self.store._get_provider()  # Feast's online-store API; the SDK facade costs 4×
        self.names = [f.name for f in self.view.features]
        self.ttl_days = config.features.ttl_days
        self.watermark = online.watermark_path(workdir)
        self._seen: int | None = None  # the watermark file's mtime when last read
        self._oldest: datetime | None = None

    @property
    def materialized(self) -> bool:
        """Whether anything was ever materialized (an applied store starts empty)."""
        return self.watermark.exists()

    @property
    def oldest(self) -> datetime | None:
        """``online.ttl_cutoff``, re-read when a materialization moves the watermark (one ``stat``
        per read)."""
        try:
            seen = self.watermark.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if seen != self._seen:
            try:
                self._oldest = online.ttl_cutoff(self.workdir, self.ttl_days)
            except (ValueError, KeyError):  # unreadable: keep the last cutoff, read it next time
                return self._oldest
            self._seen = seen
        return self._oldest

    def read(self, ids: list[Any]) -> list[dict[str, Any] | None]:
        """Feature dicts per entity (None: unknown, or older than the TTL)."""
        return self.read_timed(ids)[0]

    def read_timed(self, ids: list[Any]) -> tuple[list[dict[str, Any] | None], list[str | None]]:
        """Feature dicts per entity and the data time (ISO) of each row."""
        keys = [
            self._entity_key(join_keys=[self.key], entity_values=[self._value(**{self._kind: i})])
            for i in ids
        ]
        rows = self.provider.online_read(config=self.store.config, table=self.view, entity_keys=keys)
        result: list[dict[str, Any] | None] = []
        times: list[str | None] = []
        oldest = self.oldest
        for timestamp, values in rows:
            if values is None or (oldest is not None and timestamp is not None and timestamp < oldest):
                result.append(None)
                times.append(None)
                continue
            result.append({name: _scalar(values.get(name)) for name in self.names})
            times.append(utc_iso(timestamp))
        return result, times

    def context(self) -> dict[str, Any]:
        """The latest row of each entity-less context view (e.g. macro indicators), as one dict."""
        values: dict[str, Any] = {}
        for view in self.context_views:
            [(_, row)] = self.provider.online_read(
                config=self.store.config, table=view, entity_keys=[self._entity_key()]
            )
            values.update({f.name: _scalar((row or {}).get(f.name)) for f in view.features})
        return values

    def ping(self) -> None:
        """Raise if the online store cannot be read."""
        self.read([0 if self._kind == "int64_val" else ""])


def _scalar(value: Any) -> Any:
    """A Feast ``Value`` proto as a Python scalar; Feast's own converter costs ~10 µs a value."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)
