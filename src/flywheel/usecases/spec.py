"""The use-case interface: everything problem-specific, in one typed object the platform takes.

A use case names its raw tables (schemas and cross-table checks), the entity its predictions are
about, the feature views (SQL files computing features at snapshot dates, or over the whole lake for
entity-less views such as macro indicators), the label definition and when a label becomes
observable, the task type, the service's request/response names, the data generator with its drift
scenarios, and default settings. The platform (data, features, training, registry, pipeline,
serving, monitoring, retraining) reads only this object and never names a use case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from flywheel.data.batch import Batch
from flywheel.data.schema import TableSpec

TaskType = Literal["binary", "multiclass"]


class Settings(BaseModel):
    """Base of a use case's own config sections (strict: unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LabelSettings(Settings):
    """The ``labels:`` section. ``horizon_days`` is how long after a label's time its outcome is
    known (the purge gap between splits, and how far back labels are observable); ``cadence_days``
    puts label times on the snapshot grid (``None``: each label row carries its own time, e.g. a
    phone contact)."""

    horizon_days: int = 0
    cadence_days: int | None = None

    @property
    def label_column(self) -> str:
        raise NotImplementedError

    def sql_params(self) -> dict[str, Any]:
        """Values substituted into the label SQL (``{name}``)."""
        return {**self.model_dump(), "label_column": self.label_column}


@dataclass(frozen=True)
class Entity:
    """What a prediction is about: a Feast entity with one join key."""

    name: str
    join_key: str
    description: str
    dtype: Literal["int64", "string"] = "int64"


@dataclass(frozen=True)
class FeatureView:
    """Features computed by one SQL file over the lake's tables.

    With an ``entity`` the SQL computes one row per entity at each snapshot date in the temp table
    ``snapshot_dates(feature_timestamp)``, from ``start_sql`` (one timestamp: when the first snapshot
    can be) to the lake's end. Without one the view is entity-less (every row applies to everyone,
    e.g. macro indicators published over time): the SQL returns all rows with their own
    ``feature_timestamp``, and a prediction joins the latest row at or before its time.
    """

    name: str
    sql: str
    entity: Entity | None
    description: str
    start_sql: str | None = None


@dataclass(frozen=True)
class LabelSpec:
    """Labels: rows of (join keys, ``label_timestamp``, label column, request features).

    ``sql`` reads ``label_dates(label_timestamp)`` when labels are on the grid, and the settings as
    ``{name}`` placeholders. ``observed_sql`` returns (first, last): the span of time whose
    outcomes the lake has observed. ``request_features`` are columns of the label rows that are model
    inputs a caller sends with a request (e.g. a contact's attributes at call time).
    """

    sql: str
    observed_sql: str
    request_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Extraction:
    """Seed 003's extraction: a SQL template run for a logical date against the extraction source
    (DuckDB over the lake, or MySQL/MariaDB by configuration), keeping the rows of the last
    ``window_days`` logical dates in ``target`` (re-running a date deletes and re-inserts its rows).

    ``sql`` names the template in ``<package>/sql/`` (statements separated by ``;``, the logical date
    written ``{{ ds }}``), in SQL both engines accept. ``sources`` maps each source table the template
    reads to the SQL that builds it from the lake's tables (DuckDB views over the lake; the same rows
    are what is loaded into a MySQL source)."""

    target: str
    sql: str
    sources: dict[str, str]
    window_days: int = 7


@dataclass(frozen=True)
class ApiSpec:
    """Names in the service's request and response bodies."""

    title: str
    description: str
    score_field: str  # the response field of the predicted probability
    example_id: int | str = 42
    example: dict[str, Any] | None = None  # a whole request body, when callers send more than an id
    band_field: str | None = "risk_band"
    population: str | None = None  # pandas query over snapshot rows: who simulated traffic scores


class Generator(Protocol):
    """A deterministic synthetic data generator with named drift scenarios."""

    scenarios: Sequence[str]

    def generation_id(self, settings: Any) -> str: ...

    def generate(self, settings: Any, batch_id: str) -> Batch: ...

    def simulate(
        self, lake: Any, previous: dict[str, Any], days: int, drift: str, batch_id: str | None
    ) -> Batch: ...


@dataclass
class Quarantine:
    """Rows a use case's reader could not clean, by the first rule each broke: how many, and a few
    examples (with personal data already masked). ``rules`` documents each rule by name; ``repairs``
    counts the values each documented repair changed in the rows kept (described in
    ``repair_rules``)."""

    rows_read: int
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)
    repair_rules: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def share(self) -> float:
        return self.rows / self.rows_read if self.rows_read else 0.0


@dataclass
class Published:
    """A file read in a use case's own layout: its tables and, when rows were quarantined, the report."""

    tables: dict[str, pa.Table]
    quarantine: Quarantine | None = None


Reader = Callable[[Path], Published | None]
PiiRule = Literal["drop", "hash"]


@dataclass(frozen=True, eq=False)  # identity: one object per use case, hashable for caches
class UseCase:
    """One problem Flywheel runs. ``package`` holds the SQL files (``<package>/sql/<file>``)."""

    name: str
    package: str
    tables: dict[str, TableSpec]
    table_order: tuple[str, ...]
    entity: Entity  # what a prediction is about: the labels' and the prediction log's key
    snapshot: FeatureView  # features of an entity at each snapshot date (the online store serves them)
    labels: LabelSpec
    api: ApiSpec
    label_settings: type[LabelSettings]
    generator_settings: type[Settings]
    generator: Generator
    task: TaskType = "binary"
    # multiclass: the class names, in the order of the label's integer codes (0, 1, …)
    classes: tuple[str, ...] = ()
    context: tuple[FeatureView, ...] = ()  # entity-less views, e.g. macro indicators over time
    # (check, table, column, message, SQL selecting failing rows of <table>_batch; <t>_all = batch + lake)
    relation_checks: tuple[tuple[str, str, str | None, str, str], ...] = ()
    state_table: str = "state"  # where the generator's latent state lives: lake/sim/<state_table>
    read_file: Reader | None = None  # files in a use case's own layout; None: a file per table
    extraction: Extraction | None = None  # seed 003's templated extraction, when the use case has one
    # personal data in the published layout: column → dropped or hashed at ingest (never a feature,
    # never in the prediction log or a report)
    pii: dict[str, PiiRule] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # config values under the file's
    demo: dict[str, Any] = field(default_factory=dict)  # `flywheel demo`'s overrides (dotted keys)
    demo_traffic: tuple[int, int] = (84, 150)  # the demo's simulated traffic: days, rows per day
    size_setting: str | None = None  # the generator setting `data generate --size` sets

    def __post_init__(self) -> None:
        if (self.task == "multiclass") != (len(self.classes) > 2) or len(self.classes) == 1:
            raise ValueError(
                f"use case {self.name}: a multiclass task names its classes (3 or more), a binary one "
                f"none (got task={self.task!r}, classes={self.classes})"
            )

    def context_view(self, name: str) -> FeatureView:
        return next(view for view in self.context if view.name == name)

    def sql_text(self, name: str) -> str:
        return resources.files(self.package).joinpath("sql", name).read_text()

    def sql_hash(self) -> str:
        """Hash of every feature and label definition: a change invalidates snapshots and datasets."""
        digest = hashlib.sha256()
        for name in (self.snapshot.sql, *(view.sql for view in self.context), self.labels.sql):
            digest.update(self.sql_text(name).encode())
        return digest.hexdigest()[:16]
