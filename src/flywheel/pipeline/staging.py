"""Orchestrator tasks that share no disk: a step's workdir staged in from an artifact store and out.

A compiled KFP or Airflow task runs ``flywheel step NAME --artifact-store URL`` in a folder of its own.
The store (a local path, ``s3://…``, ``gs://…``: any fsspec URL) holds the workdir's files; the task
copies them into its folder, runs the step there, and after the step succeeded copies back what the
step wrote or changed and deletes what it removed. A failed or skipped step writes nothing back, so
the store stays as it was. Manifests go last, so a reader never sees a manifest naming files that are
not there yet. The workdir is relocatable (MLflow's and Feast's stores are re-rooted when opened), so
each task's copy works wherever it lands.

SQLite databases (the MLflow store, Feast's registry and online store) travel as consistent copies
made by SQLite's backup API, with their write-ahead logs folded in (``-wal``/``-shm`` files are never
staged). A local store may be a live workdir (the default: the compiling workdir): the task then
holds its write lock from staging in to staging out, writes each database back through SQLite (a
service reading it sees the change, never a half-copied file), and points the MLflow store's
artifact locations at the store's folder rather than at the task's.

Paths in a step's outputs name the store (``URL/datasets/…``), which is what the orchestrator shows
and hands downstream; a downstream task maps them back to its own copy.

An object store is not locked: the orchestrator runs one pipeline run at a time (the Airflow DAG sets
``max_active_runs=1``; a KFP user schedules it so).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path

from flywheel.config import FlywheelConfig
from flywheel.errors import ConfigError
from flywheel.features import online
from flywheel.lock import workdir_lock
from flywheel.pipeline.runner import run_single_step
from flywheel.training import tracking
from flywheel.workdir import STAGING_PREFIX, Workdir

_logger = logging.getLogger(__name__)

# never staged: the writer lock, scratch space, downloaded model copies and the service's own log
_SKIPPED_TOP = frozenset({".lock", ".staging", ".model_cache", "predictions"})
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # folded into the database's copy
_SQLITE_MAGIC = b"SQLite format 3\x00"
_MANIFEST = "manifest.json"

Signature = tuple[int, ...]  # size and mtime in ns, and the write-ahead log's for a database


class ArtifactStore:
    """The workdir's files under one fsspec URL."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem

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
        self.local = isinstance(self.fs, LocalFileSystem)

    @contextlib.contextmanager
    def writer(self, command: str) -> Iterator[None]:
        """Held from staging in to staging out: a local store's workdir lock (an object store has none)."""
        if not self.local:
            yield
            return
        with workdir_lock(Workdir.at(self.root), command):
            yield

    def pull(self, workdir: Workdir) -> dict[str, Signature]:
        """Copy the store's files into ``workdir``; returns what is there afterwards (see :func:`push`)."""
        if not self.fs.isdir(self.root):
            raise ConfigError(
                f"artifact store {self.url} holds no workdir: copy one there (a lake at least: "
                "`flywheel data generate`, or `data ingest`, into a workdir) before running steps from it"
            )
        workdir.root.mkdir(parents=True, exist_ok=True)
        found = [remote for remote in self.fs.find(self.root) if _staged(self._relative(remote))]
        for remote in found:
            local = workdir.root / self._relative(remote)
            local.parent.mkdir(parents=True, exist_ok=True)
            if self.local and _is_sqlite(Path(remote)):
                _copy_database(Path(remote), local)  # a live database: through SQLite, WAL included
            else:
                self.fs.get_file(remote, str(local))
        _logger.info("staged %d files in from %s", len(found), self.url)
        return snapshot(workdir)

    def push(self, workdir: Workdir, before: Mapping[str, Signature]) -> tuple[int, int]:
        """Copy what changed in ``workdir`` since ``before`` to the store and delete what was removed;
        returns (files written, files deleted)."""
        after = snapshot(workdir)
        # manifests last, and the online store's watermark after its database: a service sees a new
        # materialization (its prediction cache keys on it) only once the rows are there
        watermark = online.watermark_path(workdir).relative_to(workdir.root).as_posix()
        changed = sorted(
            (path for path, signature in after.items() if before.get(path) != signature),
            key=lambda path: (Path(path).name == _MANIFEST or path == watermark, path),
        )
        scratch = workdir.staging / "push"
        scratch.mkdir(parents=True, exist_ok=True)
        for relative in changed:
            source, target = workdir.root / relative, f"{self.root}/{relative}"
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            if not _is_sqlite(source):
                self.fs.put_file(str(source), target)
                continue
            copy = scratch / relative.replace("/", "__")
            _copy_database(source, copy)
            if self.local and relative == workdir.mlflow_db.relative_to(workdir.root).as_posix():
                tracking.reroot(Workdir.at(self.root), copy)  # artifact locations in the store's folder
            if self.local:
                _copy_database(copy, Path(target))
            else:
                self.fs.put_file(str(copy), target)
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

    def _relative(self, remote: str) -> str:
        return remote[len(self.root) :].lstrip("/")


def snapshot(workdir: Workdir) -> dict[str, Signature]:
    """Every staged file under ``workdir`` (POSIX relative path) → its size and modification time, and
    for a database those of its write-ahead log (a write may sit there, the database file untouched)."""
    files: dict[str, Signature] = {}
    for folder, dirs, names in os.walk(workdir.root):
        relative_folder = Path(folder).relative_to(workdir.root)
        dirs[:] = [d for d in dirs if _staged((relative_folder / d).as_posix())]
        for name in names:
            path, relative = Path(folder) / name, (relative_folder / name).as_posix()
            if not _staged(relative) or path.is_symlink():  # flywheel writes no links: not its data
                continue
            signature: tuple[int, ...] = ()
            for part in (path, path.with_name(f"{name}-wal")):
                if part.exists():
                    stat = part.stat()
                    signature += (stat.st_size, stat.st_mtime_ns)
            files[relative] = signature
    return files


def _staged(relative: str) -> bool:
    parts = relative.split("/")
    return (
        parts[0] not in _SKIPPED_TOP
        and not any(part.startswith(STAGING_PREFIX) for part in parts)
        and not parts[-1].endswith(_SQLITE_SIDE_FILES)
    )


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` into ``target`` (created or overwritten in
    place through SQLite, so that its readers see the whole new content or the old)."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as reader,
        contextlib.closing(sqlite3.connect(target, timeout=30)) as writer,
    ):
        reader.backup(writer)


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
    with tempfile.TemporaryDirectory(prefix=f"flywheel-{name}-") as folder, store.writer(f"step {name}"):
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
