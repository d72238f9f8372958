"""Orchestrator tasks that share no disk: a step's workdir staged in from an artifact store and out.

A compiled KFP or Airflow task runs ``flywheel step NAME --artifact-store URL`` in a folder of its own.
The store (a local path, ``s3://…``, ``gs://…``: any fsspec URL) holds the workdir's files; the task
copies them into its folder, runs the step there, and after the step succeeded copies back what the
step wrote or changed and deletes what it removed. A failed or skipped step writes nothing back, so
the store stays as it was. Manifests go last, so a reader never sees a manifest naming files that are
not there yet. The workdir is relocatable (MLflow's and Feast's stores are re-rooted when opened), so
each task's copy works wherever it lands.

Paths in a step's outputs name the store (``URL/datasets/…``), which is what the orchestrator shows
and hands downstream; a downstream task maps them back to its own copy.

The store is not locked: the orchestrator runs one pipeline run at a time (the Airflow DAG sets
``max_active_runs=1``; a KFP user schedules it so).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from flywheel.config import FlywheelConfig
from flywheel.errors import ConfigError
from flywheel.pipeline.runner import run_single_step
from flywheel.workdir import STAGING_PREFIX, Workdir

_logger = logging.getLogger(__name__)

# never staged: the writer lock, scratch space, downloaded model copies and the service's own log
_SKIPPED_TOP = frozenset({".lock", ".staging", ".model_cache", "predictions"})
_MANIFEST = "manifest.json"

Signature = tuple[int, int]  # size, mtime in ns


class ArtifactStore:
    """The workdir's files under one fsspec URL."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        if not url.strip():
            raise ConfigError("pipeline.artifact_store is empty; expected a path or a URL (s3://…, gs://…)")
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = url_to_fs(self.url)
        except (ImportError, ValueError) as error:  # an unknown protocol or its package missing
            raise ConfigError(
                f"artifact store {url!r}: {error} (s3:// needs s3fs, gs:// needs gcsfs installed)"
            ) from None
        self.root = self.root.rstrip("/")

    def pull(self, workdir: Workdir) -> dict[str, Signature]:
        """Copy the store's files into ``workdir``; returns what is there afterwards (see :func:`push`)."""
        workdir.root.mkdir(parents=True, exist_ok=True)
        found = self.fs.find(self.root) if self.fs.exists(self.root) else []
        for remote in found:
            relative = remote[len(self.root) :].lstrip("/")
            if _staged(relative):
                local = workdir.root / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(remote, str(local))
        _logger.info("staged %d files in from %s", len(found), self.url)
        return snapshot(workdir)

    def push(self, workdir: Workdir, before: Mapping[str, Signature]) -> tuple[int, int]:
        """Copy what changed in ``workdir`` since ``before`` to the store and delete what was removed;
        returns (files written, files deleted)."""
        after = snapshot(workdir)
        changed = sorted(
            (path for path, signature in after.items() if before.get(path) != signature),
            key=lambda path: (Path(path).name == _MANIFEST, path),  # manifests last
        )
        for relative in changed:
            target = f"{self.root}/{relative}"
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(workdir.root / relative), target)
        removed = sorted(set(before) - set(after))
        for relative in removed:
            self.fs.rm_file(f"{self.root}/{relative}")
        _logger.info("staged out to %s: %d written, %d deleted", self.url, len(changed), len(removed))
        return len(changed), len(removed)

    def to_store(self, values: Mapping[str, str], workdir: Workdir) -> dict[str, str]:
        """``values`` with paths in ``workdir`` written as the store's URLs."""
        return {name: _replace(value, str(workdir.root), self.url) for name, value in values.items()}

    def to_local(self, values: Mapping[str, str], workdir: Workdir) -> dict[str, str]:
        """``values`` with the store's URLs written as paths in ``workdir`` (this task's copy)."""
        return {name: _replace(value, self.url, str(workdir.root)) for name, value in values.items()}


def snapshot(workdir: Workdir) -> dict[str, Signature]:
    """Every staged file under ``workdir`` (POSIX relative path) → its size and modification time."""
    files: dict[str, Signature] = {}
    for folder, dirs, names in os.walk(workdir.root):
        relative_folder = Path(folder).relative_to(workdir.root)
        dirs[:] = [d for d in dirs if _staged((relative_folder / d).as_posix())]
        for name in names:
            relative = (relative_folder / name).as_posix()
            if _staged(relative):
                stat = (Path(folder) / name).stat()
                files[relative] = (stat.st_size, stat.st_mtime_ns)
    return files


def _staged(relative: str) -> bool:
    parts = relative.split("/")
    return parts[0] not in _SKIPPED_TOP and not any(part.startswith(STAGING_PREFIX) for part in parts)


def _replace(value: str, old: str, new: str) -> str:
    """``value`` with the folder ``old`` at its start (or after ``file://``) written as ``new``."""
    for prefix in ("", "file://"):
        start = prefix + old
        if value == start or value.startswith(start + "/"):
            return new + value[len(start) :]
    return value


def run_staged(
    config: FlywheelConfig,
    store: ArtifactStore,
    name: str,
    explicit: dict[str, str],
    upstream: list[dict[str, str]],
    pipeline_run_id: str | None = None,
    logical_date: date | None = None,
) -> dict[str, str]:
    """:func:`flywheel.pipeline.runner.run_single_step` in a temporary folder of its own, staged in
    from ``store`` and, when the step succeeded, out to it; the folder is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"flywheel-{name}-") as folder:
        workdir = Workdir.at(folder)
        before = store.pull(workdir)
        outputs = run_single_step(
            config,
            workdir,
            name,
            store.to_local(explicit, workdir),
            [store.to_local(values, workdir) for values in upstream],
            pipeline_run_id,
            logical_date,
        )
        store.push(workdir, before)
        return store.to_store(outputs, workdir)
