"""``extract`` (seed 003): the use case's templated extraction for the logical date, and the training
rows it selects.

The extraction runs on the configured source (DuckDB over the lake, or MySQL) and keeps its rolling
window table there; the records it extracted for the logical date are the rows this run trains on:
of the labels ``features`` built, the step keeps those whose entity key the extraction returned, and
``data_load`` joins their features point-in-time as for any labels. No logical date (an in-process
run): the date of the newest observed data, never the wall clock. An extraction that returns no rows
fails the step, naming the date and the window, before anything is trained.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.data.engine import DuckEngine
from flywheel.data.extract import run_extraction
from flywheel.data.lake import Lake
from flywheel.errors import DataError
from flywheel.features import labels as labels_module
from flywheel.pipeline.context import StepContext


def run(ctx: StepContext, labels: str) -> dict[str, str]:
    spec, workdir = ctx.config.spec, ctx.workdir
    lake = Lake(workdir, spec)
    ds = ctx.logical_date or _newest_data_date(ctx, lake)
    result = run_extraction(spec, ctx.config.data.extract, lake, ds)
    window = ", ".join(f"{day}: {rows}" for day, rows in sorted(result.window.items()))
    if result.rows_for_ds == 0:
        raise DataError(
            f"the {result.target} extraction for {ds} returned no rows (window {window or 'empty'}): "
            "no records to train on; pass a logical date within the data"
        )
    key = spec.entity.join_key
    if key not in result.rows.column_names:
        raise DataError(f"the {result.target} extraction returns no {key} column to select label rows by")
    all_labels = labels_module.read(workdir, Path(labels))
    chosen = all_labels.filter(pc.is_in(all_labels.column(key), value_set=_keys(result.rows, key)))
    if chosen.num_rows == 0:
        raise DataError(
            f"none of the {result.rows_for_ds} records extracted for {ds} has an observed label; "
            "rebuild the features (`flywheel features build`)"
        )
    path = workdir.extracted_labels(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(chosen, path, compression="zstd")
    return {
        "labels": str(path),
        "logical_date": ds.isoformat(),
        "source": result.source,
        "rows": str(result.rows_for_ds),
        "label_rows": str(chosen.num_rows),
        "rows_deleted": str(result.rows_deleted),
        "window_dates": str(result.dates_in_window),
    }


def _keys(rows: pa.Table, key: str) -> pa.Array:
    return pc.unique(rows.column(key).combine_chunks())


def _newest_data_date(ctx: StepContext, lake: Lake) -> date:
    _, last = labels_module.observed_range(ctx.config.spec, lake.engine(DuckEngine()))
    return last.date()
