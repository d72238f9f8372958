"""The point-in-time join: labels (entity rows) joined to feature snapshots as Feast does it.

Semantics of Feast's ``get_historical_features``, checked by a conformance test against Feast itself:
for an entity row (key K, time T) take the feature row of K with the greatest
``feature_timestamp <= T``; with a TTL, only if ``feature_timestamp >= T - ttl``; among rows with the
same feature timestamp the greatest ``created_timestamp`` wins; no match keeps the entity row with
nulls. Entity rows are never dropped or duplicated, and come back in their input order.

How: a DuckDB ``ASOF LEFT JOIN`` on the keys alone (key, timestamps, row numbers) finds, for every
entity row, the position of its feature row; the feature columns are then gathered with one Arrow
``take``. The wide feature rows never pass through the join, which is what makes it fast.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.data.duck import connect


def point_in_time_join(
    entities: pa.Table,
    features: pa.Table | list[str],
    *,
    entity_key: str | None,
    entity_timestamp: str,
    feature_timestamp: str,
    created_timestamp: str | None,
    feature_names: list[str],
    ttl: timedelta | None,
    con: duckdb.DuckDBPyConnection | None = None,
    matched_timestamp: str | None = None,
) -> pa.Table:
    """Entity rows with ``feature_names`` as of each row's timestamp.

    Args:
        entities: the entity rows (any extra columns, such as the label, are carried through).
        entity_key: the join key; ``None`` for an entity-less view (every row applies to everyone).
        features: a feature table, or Parquet files holding one.
        matched_timestamp: also return the matched row's feature timestamp (null when none) under
            this name, for audits such as leakage tests.
    """
    if not isinstance(features, pa.Table):
        columns = [
            *([entity_key] if entity_key else []),
            feature_timestamp,
            *([created_timestamp] if created_timestamp else []),
            *feature_names,
        ]
        features = pa.concat_tables(pq.read_table(path, columns=columns) for path in features)
    con = con or connect()
    feature_keys = {
        "k": _keys(features, entity_key),
        "ts": features.column(feature_timestamp),
        "position": pa.array(np.arange(features.num_rows, dtype=np.int64)),
    }
    if created_timestamp:
        feature_keys["created"] = features.column(created_timestamp)
    con.register("feature_keys", pa.table(feature_keys))
    con.register(
        "entity_keys",
        pa.table(
            {
                "k": _keys(entities, entity_key),
                "ts": entities.column(entity_timestamp),
                "row": pa.array(np.arange(entities.num_rows, dtype=np.int64)),
            }
        ),
    )
    candidates = "feature_keys"
    if (
        created_timestamp
        and con.execute("SELECT count(*) > count(DISTINCT (k, ts)) FROM feature_keys").fetchall()[0][0]
    ):
        # ties on (key, timestamp): only the latest created row may be matched
        candidates = (
            "(SELECT * FROM feature_keys QUALIFY row_number() OVER "
            "(PARTITION BY k, ts ORDER BY created DESC) = 1)"
        )
    valid = f"f.ts >= e.ts - INTERVAL {int(ttl.total_seconds())} SECOND" if ttl else "true"
    matches = con.sql(
        f"SELECT CASE WHEN {valid} THEN f.position END AS position, "
        f"CASE WHEN {valid} THEN f.ts END AS matched_ts "
        f"FROM entity_keys e ASOF LEFT JOIN {candidates} f ON e.k = f.k AND e.ts >= f.ts ORDER BY e.row"
    ).to_arrow_table()
    gathered = features.select(feature_names).take(matches.column("position"))
    result = entities
    for name in feature_names:
        result = result.append_column(gathered.schema.field(name), gathered.column(name))
    if matched_timestamp:
        result = result.append_column(
            matched_timestamp,
            matches.column("matched_ts").cast(features.schema.field(feature_timestamp).type),
        )
    return result


def _keys(table: pa.Table, entity_key: str | None) -> pa.Array:
    """The join key column, or one constant key for an entity-less view."""
    if entity_key is None:
        return pa.array(np.zeros(table.num_rows, dtype=np.int64))
    return table.column(entity_key)
