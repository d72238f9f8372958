"""Online feature reads for serving, through Feast's online store.

Flywheel guards what Feast does not: a snapshot older than the feature view's TTL (counted back from
the newest materialized snapshot, in data time, as of the latest materialization) is treated as
missing.

Feast's SQLite store (the default) is read directly: one ``SELECT`` per request on Feast's own table,
with the entity keys serialized by Feast's ``serialize_entity_key`` and the rows' ``Value`` protos
parsed into one reused message. Feast's ``online_read`` returns the same rows but converts each
feature's timestamp in Python (its SQLite connection parses every ``timestamp`` column) and builds a
message per feature: twice the cost of a one-entity read (65 µs against 30). Any other store (Redis)
goes through Feast's ``OnlineStore.online_read``. ``tests/integration/test_online_read.py`` holds the two
paths equal.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.features import online, repo
from flywheel.serving.predlog import utc_iso
from flywheel.workdir import Workdir

# a Value's scalar fields: read from the reused message as Python values (anything else is a message
# that the next parse would overwrite, so it is parsed into a message of its own)
_SCALARS = frozenset(
    {
        "int64_val",
        "double_val",
        "string_val",
        "int32_val",
        "float_val",
        "bool_val",
        "bytes_val",
        "unix_timestamp_val",
    }
)
_MAX_TIMES = 10_000  # distinct data times remembered (a snapshot date is shared by its rows)
_MAX_KEYS = 20_000  # serialized entity keys remembered (cleared when full: ~4 MB at most)

# per entity: (the row's data time, feature name → scalar), or (None, None) when the store has none
Rows = list[tuple[datetime | None, dict[str, Any] | None]]


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
        self._watermark = str(self.watermark)
        self._seen: int | None = None  # the watermark file's mtime when last read
        self._oldest: datetime | None = None
        self._sqlite = SqliteRows(self.store.config, Value) if _plain_sqlite(self.provider) else None
        self._keys: dict[int | str, bytes] = {}  # entity id → its serialized key (SQLite)
        self._times: dict[datetime, str] = {}  # data time → its ISO form

    @property
    def materialized(self) -> bool:
        """Whether anything was ever materialized (an applied store starts empty)."""
        return self.watermark.exists()

    @property
    def oldest(self) -> datetime | None:
        """``online.ttl_cutoff``, re-read when a materialization moves the watermark (one ``stat``
        per read)."""
        try:
            seen = os.stat(self._watermark).st_mtime_ns
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
        rows = self._rows(ids)
        result: list[dict[str, Any] | None] = []
        times: list[str | None] = []
        oldest = self.oldest
        names = self.names
        for timestamp, values in rows:
            if values is None or (oldest is not None and timestamp is not None and timestamp < oldest):
                result.append(None)
                times.append(None)
                continue
            result.append({name: values.get(name) for name in names})
            times.append(self._iso(timestamp))
        return result, times

    def context(self) -> dict[str, Any]:
        """The latest row of each entity-less context view (e.g. macro indicators), as one dict."""
        values: dict[str, Any] = {}
        for view in self.context_views:
            if self._sqlite is not None:
                [(_, row)] = self._sqlite(view, [self._sqlite.serialize(self._entity_key())])
            else:
                [(_, row)] = self._feast_rows(view, [self._entity_key()])
            values.update({f.name: (row or {}).get(f.name) for f in view.features})
        return values

    def ping(self) -> None:
        """Raise if the online store cannot be read."""
        self.read([0 if self._kind == "int64_val" else ""])

    def _rows(self, ids: list[Any]) -> Rows:
        """The snapshot view's rows of ``ids``: read directly from SQLite, else through Feast."""
        if self._sqlite is None:
            return self._feast_rows(self.view, [self._entity(i) for i in ids])
        return self._sqlite(self.view, [self._serialized(i) for i in ids])

    def _entity(self, i: Any) -> Any:
        return self._entity_key(join_keys=[self.key], entity_values=[self._value(**{self._kind: i})])

    def _serialized(self, i: Any) -> bytes:
        if type(i) is not int and type(i) is not str:  # exactly: a bool is an int, and no id
            return self._sqlite.serialize(self._entity(i))
        key = self._keys.get(i)
        if key is None:
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            key = self._keys[i] = self._sqlite.serialize(self._entity(i))
        return key

    def _feast_rows(self, view: Any, entity_keys: list[Any]) -> Rows:
        rows = self.provider.online_read(config=self.store.config, table=view, entity_keys=entity_keys)
        return [
            (timestamp, None if values is None else {n: _scalar(v) for n, v in values.items()})
            for timestamp, values in rows
        ]

    def _iso(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        iso = self._times.get(moment)
        if iso is None:
            if len(self._times) >= _MAX_TIMES:
                self._times.clear()
            iso = self._times[moment] = utc_iso(moment)
        return iso


class SqliteRows:
    """Feast's SQLite online store, read as Feast's ``SqliteOnlineStore.online_read`` reads it (the
    same table, keys, query and row order; an entity's time is its last row's), without its per-row
    timestamp conversion and message per feature."""

    def __init__(self, config: Any, value_class: type) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        self.config, self.path = config, SqliteOnlineStore._get_db_path(config)
        self._serialize, self._table_id = serialize_entity_key, compute_table_id
        self._value = value_class()  # parsed into again for every row: one message, not one per feature
        self._value_class = value_class
        self._parsing = threading.Lock()  # the one message: one reader at a time
        self._connection: sqlite3.Connection | None = None  # opened on first read, as Feast does
        self._times: dict[int, datetime] = {}  # epoch seconds → the aware time Feast returns

    def serialize(self, entity_key: Any) -> bytes:
        """An ``EntityKey`` as Feast's SQLite store keys its rows."""
        version = self.config.entity_key_serialization_version
        return self._serialize(entity_key, entity_key_serialization_version=version)

    def __call__(self, view: Any, keys: list[bytes]) -> Rows:
        """Each key's (time, feature name → value), or (None, None) when the store holds none."""
        config = self.config
        table = self._table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
        where = f"FROM {_quote(table)} WHERE entity_key IN ({','.join('?' * len(keys))}) ORDER BY entity_key"
        scalar = self._scalar
        if len(keys) == 1:  # one entity (a /v1/predict): its rows, without the key in each
            rows = self._connect().execute(f"SELECT feature_name, value, event_ts {where}", keys).fetchall()
            if not rows:
                return [(None, None)]
            with self._parsing:
                return [(self._time(rows[-1][2]), {name: scalar(blob) for name, blob, _ in rows})]
        found: dict[bytes, list[Any]] = {}  # key → [its last row's time, its features]
        rows = self._connect().execute(f"SELECT entity_key, feature_name, value, event_ts {where}", keys)
        with self._parsing:
            for key, name, blob, seconds in rows:
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = [seconds, {}]
                else:
                    entry[0] = seconds
                entry[1][name] = scalar(blob)
        return [
            (self._time(entry[0]), entry[1]) if (entry := found.get(key)) is not None else (None, None)
            for key in keys
        ]

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # Feast's connection without its type detection (the timestamps are converted here)
            self._connection = sqlite3.connect(self.path, check_same_thread=False)
        return self._connection

    def _scalar(self, blob: bytes) -> Any:
        value = self._value
        value.ParseFromString(blob)
        kind = value.WhichOneof("val")
        if kind in _SCALARS:
            return getattr(value, kind)
        if kind is None or kind == "null_val":
            return None
        fresh = self._value_class()
        fresh.ParseFromString(blob)
        return getattr(fresh, kind)

    def _time(self, seconds: int) -> datetime:
        """What Feast's converter and ``online_read`` make of a stored time: local, then labelled UTC."""
        moment = self._times.get(seconds)
        if moment is None:
            if len(self._times) >= _MAX_TIMES:
                self._times.clear()
            moment = self._times[seconds] = datetime.fromtimestamp(int(seconds)).replace(tzinfo=UTC)
        return moment


def _plain_sqlite(provider: Any) -> bool:
    """Whether the online store is Feast's own SQLite store (not a subclass reading differently)."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    return type(getattr(provider, "online_store", None)) is SqliteOnlineStore


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _scalar(value: Any) -> Any:
    """A Feast ``Value`` proto as a Python scalar; Feast's own converter costs ~10 µs a value."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)
