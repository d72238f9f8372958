"""The point-in-time join: labels (entity rows) joined to feature snapshots as Feast does it.

Semantics of Feast's ``get_historical_features``, checked by a conformance test against Feast itself:
for an entity row (key K, time T) take the feature row of K with the greatest
``feature_timestamp <= T``; with a TTL, only if ``feature_timestamp >= T - ttl``; among rows with the
same feature timestamp the greatest ``created_timestamp`` wins; no match keeps the entity row with
nulls. Entity rows are never dropped or duplicated, and come back in their input order.

Implemented as one DuckDB ``ASOF LEFT JOIN`` over the features deduplicated on (key, timestamp).
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import numpy as np
import pyarrow as pa

from flywheel.data.duck import connect, scan


def point_in_time_join(
    entities: pa.Table,
    features: pa.Table | list[str],
    *,
    entity_key: str,
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
        features: a feature table, or Parquet files holding one.
        matched_timestamp: also return the matched row's feature timestamp (null when none) under
            this name, for audits such as leakage tests.
    """
    con = con or connect()
    rows = entities.append_column("_row", pa.array(np.arange(entities.num_rows, dtype=np.int64)))
    con.register("entity_rows", rows)
    if isinstance(features, pa.Table):
        con.register("feature_rows", features)
        source = "feature_rows"
    else:
        source = scan(features)
    order = f"{feature_timestamp} DESC" + (f", {created_timestamp} DESC" if created_timestamp else "")
    fetched = ", ".join(f'f."{name}" AS "_f_{name}"' for name in feature_names)
    valid = (
        f"_feature_ts >= {entity_timestamp} - INTERVAL {int(ttl.total_seconds())} SECOND" if ttl else "true"
    )
    columns = [(f"_f_{n}", n) for n in feature_names]
    if matched_timestamp:
        columns.append(("_feature_ts", matched_timestamp))
    kept = ", ".join(
        f'CASE WHEN {valid} THEN "{source_name}" END AS "{name}"' for source_name, name in columns
    )
    hidden = ", ".join(["_row", "_feature_ts", *(f'"_f_{n}"' for n in feature_names)])
    query = f"""
        WITH latest AS (
            SELECT * FROM {source}
            QUALIFY row_number() OVER (PARTITION BY {entity_key}, {feature_timestamp} ORDER BY {order}) = 1
        ),
        joined AS (
            SELECT e.*, f.{feature_timestamp} AS _feature_ts, {fetched}
            FROM entity_rows e
            ASOF LEFT JOIN latest f
                ON e.{entity_key} = f.{entity_key} AND e.{entity_timestamp} >= f.{feature_timestamp}
        )
        SELECT * EXCLUDE ({hidden}), {kept}
        FROM joined
        ORDER BY _row
    """
    return con.sql(query).to_arrow_table()
