"""The point-in-time join: labels (entity rows) joined to feature snapshots as Feast does it.

Semantics of Feast's ``get_historical_features``, checked by a conformance test against Feast itself:
for an entity row (key K, time T) take the feature row of K with the greatest
``feature_timestamp <= T``; with a TTL, only if ``feature_timestamp >= T - ttl``; among rows with the
same feature timestamp the greatest ``created_timestamp`` wins; no match keeps the entity row with
nulls. Entity rows are never dropped or duplicated, and come back in their input order.

How: the keys alone (key, timestamps, row numbers) go through SQL that finds, for every entity row,
the position of its feature row; the feature columns are then gathered with one Arrow ``take``. The
wide feature rows never pass through the join, which is what makes it fast. On Spark the keys go
through SQL without an ASOF join (:func:`match_sql`): feature and entity keys in one stream ordered by
time within a key, feature rows first on equal times, where a running ``max`` of the feature times is
each entity row's latest feature time at or before it. DuckDB runs its ASOF join, which is faster
there; both are tested equal (and the training sets the two engines build).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.data.engine import DuckEngine, Engine


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
    engine: Engine | None = None,
    matched_timestamp: str | None = None,
) -> pa.Table:
    """Entity rows with ``feature_names`` as of each row's timestamp.

    Args:
        entities: the entity rows (any extra columns, such as the label, are carried through).
        entity_key: the join key; ``None`` for an entity-less view (every row applies to everyone).
        features: a feature table, or Parquet files holding one.
        engine: where the key SQL runs (default a new DuckDB connection).
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
    engine = engine or DuckEngine()
    feature_keys = {
        "k": _keys(features, entity_key),
        "ts": features.column(feature_timestamp),
        "position": pa.array(np.arange(features.num_rows, dtype=np.int64)),
    }
    if created_timestamp:
        feature_keys["created"] = features.column(created_timestamp)
    engine.register_arrow("feature_keys", pa.table(feature_keys))
    engine.register_arrow(
        "entity_keys",
        pa.table(
            {
                "k": _keys(entities, entity_key),
                "ts": entities.column(entity_timestamp),
                "row": pa.array(np.arange(entities.num_rows, dtype=np.int64)),
            }
        ),
    )
    if engine.name == "duckdb":
        matches = _asof_matches(engine, ttl, created=created_timestamp is not None)
    else:
        matches = engine.query(match_sql(ttl, created=created_timestamp is not None))
    matches = matches.sort_by("row")
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


def match_sql(ttl: timedelta | None, created: bool) -> str:
    """For each row of ``entity_keys(k, ts, row)``: the ``position`` and time ``matched_ts`` of its
    feature row in ``feature_keys(k, ts, position[, created])`` (nulls when none)."""
    latest = (
        "SELECT k, ts, position FROM (SELECT k, ts, position, row_number() OVER (PARTITION BY k, ts "
        "ORDER BY created DESC NULLS LAST, position DESC) AS rn FROM feature_keys) AS d WHERE rn = 1"
        if created
        else "SELECT k, ts, max(position) AS position FROM feature_keys GROUP BY k, ts"
    )
    valid = "m.k IS NOT NULL AND m.ts IS NOT NULL AND m.fts IS NOT NULL"
    if ttl:
        valid += f" AND m.fts >= m.ts - INTERVAL {int(ttl.total_seconds())} SECOND"
    return f"""
WITH f AS ({latest}),
u AS (
    SELECT k, ts, 0 AS side, ts AS fts, CAST(NULL AS BIGINT) AS row FROM f
    UNION ALL
    SELECT k, ts, 1 AS side, CAST(NULL AS TIMESTAMP) AS fts, row FROM entity_keys
),
m AS (
    SELECT k, ts, side, row, max(fts) OVER (
        PARTITION BY k ORDER BY ts NULLS FIRST, side ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS fts
    FROM u
)
SELECT m.row, CASE WHEN {valid} THEN f.position END AS position,
    CASE WHEN {valid} THEN m.fts END AS matched_ts
FROM m LEFT JOIN f ON f.k = m.k AND f.ts = m.fts
WHERE m.side = 1
"""


def _asof_matches(engine: DuckEngine, ttl: timedelta | None, created: bool) -> pa.Table:
    """:func:`match_sql`'s result by DuckDB's ASOF join, which is faster there (equal: tested)."""
    candidates = "feature_keys"
    if created and engine.row("SELECT count(*) > count(DISTINCT (k, ts)) FROM feature_keys")[0]:
        # ties on (key, timestamp): only the latest created row may be matched (then the last one)
        candidates = (
            "(SELECT * FROM feature_keys QUALIFY row_number() OVER "
            "(PARTITION BY k, ts ORDER BY created DESC NULLS LAST, position DESC) = 1)"
        )
    elif not created:
        candidates = "(SELECT k, ts, max(position) AS position FROM feature_keys GROUP BY k, ts)"
    valid = f"f.ts >= e.ts - INTERVAL {int(ttl.total_seconds())} SECOND" if ttl else "true"
    return engine.query(
        f"SELECT e.row, CASE WHEN {valid} THEN f.position END AS position, "
        f"CASE WHEN {valid} THEN f.ts END AS matched_ts "
        f"FROM entity_keys e ASOF LEFT JOIN {candidates} f ON e.k = f.k AND e.ts >= f.ts"
    )


def _keys(table: pa.Table, entity_key: str | None) -> pa.Array:
    """The join key column, or one constant key for an entity-less view."""
    if entity_key is None:
        return pa.array(np.zeros(table.num_rows, dtype=np.int64))
    return table.column(entity_key)
