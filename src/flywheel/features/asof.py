"""``flywheel features dataset --as-of BATCH_OR_SNAPSHOT``: an earlier training set, rebuilt from the
lake as it was when that batch was committed.

The lake only ever grows by whole batches, so its state after a batch is the manifest's prefix up to
that batch (for an Iceberg lake, each table's snapshot the prefix names). The features, labels and
training set are built from that prefix in a scratch workdir beside the lake (its ``lake`` reads the
same files or snapshots; nothing is copied) and the dataset is moved into the workdir's datasets.
The dataset id hashes the batches, the feature list and the labels, so a rebuild of a training set
made at that time has the same id and the same bytes (tested).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.data.lake import Lake
from flywheel.errors import DataError
from flywheel.features import dataset as dataset_module
from flywheel.features import ops
from flywheel.workdir import Workdir


def batch_of(lake: Lake, as_of: str) -> int:
    """The index in the manifest of the batch ``as_of`` names: a batch id, or the id of an Iceberg
    snapshot a batch created."""
    batches = lake.batches()
    for index, record in enumerate(batches):
        snapshots = {str(t.get("snapshot_id")) for t in record["tables"].values()}
        if as_of == record["batch_id"] or as_of in snapshots:
            return index
    known = ", ".join(b["batch_id"] for b in batches) or "none"
    raise DataError(
        f"--as-of {as_of}: no committed batch or Iceberg snapshot of that id; the lake's batches are: "
        f"{known} (`flywheel data status` lists them and their snapshots)"
    )


def rebuild(config: FlywheelConfig, workdir: Workdir, as_of: str) -> dataset_module.DatasetResult:
    """Build the training set of the lake as of batch (or snapshot) ``as_of`` into the workdir."""
    lake = Lake(workdir, config.spec)
    prefix = lake.batches()[: batch_of(lake, as_of) + 1]
    if lake.format == "iceberg":
        tables = lake.iceberg()
        expired = [
            n for n, sid in lake.snapshot_ids(prefix).items() if sid and not tables.has_snapshot(n, sid)
        ]
        if expired:
            raise DataError(
                f"--as-of {as_of}: the snapshots of {', '.join(expired)} as of batch "
                f"{prefix[-1]['batch_id']} were expired (`flywheel data expire`); the lake can no longer "
                "go back that far"
            )
    scratch = Workdir.at(workdir.staging / f"as-of-{prefix[-1]['batch_id']}-{uuid.uuid4().hex[:8]}")
    try:
        _scratch_lake(lake, scratch, prefix)
        ops.build(config, scratch)
        built = dataset_module.build(config, scratch)
        target = workdir.datasets / built.dataset_id
        if not target.exists():
            workdir.datasets.mkdir(parents=True, exist_ok=True)
            os.rename(built.path, target)  # the same filesystem: atomic
        return dataset_module.DatasetResult(built.dataset_id, target, built.metadata)
    finally:
        shutil.rmtree(scratch.root, ignore_errors=True)


def _scratch_lake(lake: Lake, scratch: Workdir, prefix: list[dict[str, Any]]) -> None:
    """A lake whose manifest is ``prefix`` and whose files are the original's (linked, not copied)."""
    scratch.lake.mkdir(parents=True)
    manifest = {**lake.manifest(), "batches": prefix}
    if lake.format == "iceberg":  # the same catalog, named explicitly: the default one is per workdir
        manifest["iceberg"] = {"catalog": lake.iceberg().properties, "namespace": lake.iceberg().namespace}
    for folder in ("raw", "sim"):
        if (lake.workdir.lake / folder).exists():
            (scratch.lake / folder).symlink_to(lake.workdir.lake / folder, target_is_directory=True)
    scratch.manifest.write_text(json.dumps(manifest, indent=2, default=str))
