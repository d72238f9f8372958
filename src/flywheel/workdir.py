"""The workdir: every path Flywheel reads or writes derives from one root folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workdir:
    """Paths under one workdir root. Creating the object touches nothing on disk."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Workdir:
        return cls(Path(root).expanduser().resolve())

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
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def inbox(self) -> Path:
        """New batches for `flywheel loop`: one folder of table files per batch."""
        return self.root / "inbox"
