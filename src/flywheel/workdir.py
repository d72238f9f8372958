"""The workdir: every path Flywheel reads or writes derives from one root folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from flywheel.errors import FlywheelError

# prefix of the scratch folders writers fill before an atomic rename (features/, datasets/)
STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class Workdir:
    """Paths under one workdir root. Creating the object touches nothing on disk."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Workdir:
        return cls(Path(root).expanduser().resolve())

    def check(self, must_exist: bool) -> None:
        """Refuse a root that is a file, and (``must_exist``) one that does not exist, so that a
        mistyped ``--workdir`` is not silently created by a command that only reads."""
        if self.root.exists() and not self.root.is_dir():
            raise FlywheelError(f"{self.root} is a file, not a workdir folder; check --workdir")
        if must_exist and not self.root.exists():
            raise FlywheelError(
                f"no workdir at {self.root}; create one with `flywheel data generate` or "
                "`flywheel data ingest`, or check --workdir"
            )

    @property
    def lock(self) -> Path:
        """Held by the one process writing to this workdir (see :mod:`flywheel.lock`)."""
        return self.root / ".lock"

    def staging_leftovers(self) -> list[Path]:
        """Staging folders that exist; when nobody holds the lock, a killed writer left them."""
        batches = list(self.staging.iterdir()) if self.staging.is_dir() else []
        scratch = [
            *self.features.glob(f"{STAGING_PREFIX}*"),
            *self.datasets.glob(f"{STAGING_PREFIX}*"),
        ]
        return sorted(p for p in [*batches, *scratch] if p.is_dir())

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def raw(self) -> Path:
        return self.lake / "raw"

    @property
    def manifest(self) -> Path:
        return self.lake / "manifest.json"

    @property
    def staging(self) -> Path:
        """Scratch space for batches being written; on the workdir's filesystem so moves are atomic."""
        return self.root / ".staging"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def feature_repo(self) -> Path:
        return self.root / "feature_repo"

    @property
    def extract_db(self) -> Path:
        """The DuckDB database of the templated extraction's target tables (seed 003) on the default
        source: the rolling window of extracted rows."""
        return self.root / "extract.duckdb"

    def extracted_labels(self, logical_date: date) -> Path:
        """The labels of the records the extraction selected for ``logical_date`` (``extract``'s output)."""
        return self.features / "extracted" / f"labels-{logical_date.isoformat()}.parquet"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def prediction_log(self) -> Path:
        """The service's prediction log (SQLite) under the default ``serving.log_name``."""
        return self.prediction_log_named("predictions")

    def prediction_log_named(self, name: str) -> Path:
        """A service's prediction log; every ``*.db`` in :attr:`predictions` is one (a host each)."""
        return self.predictions / f"{name}.db"

    @property
    def model_cache(self) -> Path:
        """Scratch space for downloads of registered models: each download in a folder of its own."""
        return self.root / ".model_cache"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def alerts_log(self) -> Path:
        """Every alert raised, one JSON object a line (see :mod:`flywheel.monitoring.alerts`)."""
        return self.reports / "alerts.jsonl"

    @property
    def quarantine_reports(self) -> Path:
        """The quarantine reports of ingested batches (rows a use case's reader could not clean)."""
        return self.reports / "quarantine"

    def quarantine_report(self, batch_id: str) -> Path:
        """The quarantine report of one ingested batch (accepted or rejected)."""
        return self.quarantine_reports / f"{batch_id}.json"

    @property
    def inbox(self) -> Path:
        """New batches for `flywheel loop`: one folder of table files per batch."""
        return self.root / "inbox"
