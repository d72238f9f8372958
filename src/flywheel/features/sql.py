"""The SQL files that define features and labels, and their combined hash."""

from __future__ import annotations

import hashlib
from importlib import resources

FEATURES_SQL = "features_customer.sql"
LABELS_SQL = "labels_customer_churn.sql"


def sql_text(name: str) -> str:
    return resources.files("flywheel.features").joinpath("sql", name).read_text()


def sql_hash() -> str:
    """Hash of every feature and label definition: a change invalidates built snapshots and datasets."""
    digest = hashlib.sha256()
    for name in (FEATURES_SQL, LABELS_SQL):
        digest.update(sql_text(name).encode())
    return digest.hexdigest()[:16]
