"""Typed configuration: one YAML file per use case, loaded into strict pydantic models.

Values may reference environment variables as ``${NAME}`` or ``${NAME:-default}``. Unknown keys,
wrong types and missing variables raise :class:`~flywheel.errors.ConfigError` naming the file and
the field. Any value can be overridden per run with a dotted key (``data.generator.seed=7``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from flywheel import usecases
from flywheel.errors import ConfigError
from flywheel.usecases.spec import LabelSettings, Settings, UseCase

DEFAULT_USE_CASE = "churn"  # what `flywheel` runs without a config: `make demo`'s use case
DEFAULT_CONFIG_PATH = Path(f"configs/{DEFAULT_USE_CASE}.yaml")
MULTICLASS_ONLY = frozenset({"accuracy", "macro_f1"})  # metrics of the most probable class


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimulateConfig(StrictModel):
    """Parameters of ``flywheel data simulate`` (the next batch over time)."""

    days: int = Field(30, ge=1, le=366, description="Length of the simulated period in days.")
    drift: str = Field("none", description="Drift scenario applied to the new period (the use case's).")


class OnlineStoreConfig(StrictModel):
    """Feast online store: embedded SQLite by default, Redis by configuration."""

    type: Literal["sqlite", "redis"] = "sqlite"
    connection_string: str = Field("127.0.0.1:6379", description="Redis host:port[,options] (redis only).")


class FeaturesConfig(StrictModel):
    """Feature snapshots (offline store) and their Feast feature view."""

    cadence_days: int = Field(7, ge=1, description="Days between feature snapshots.")
    anchor: date = Field(date(2023, 1, 2), description="A snapshot date; the others are anchor ± k·cadence.")
    ttl_days: int = Field(30, ge=0, description="Feature view TTL; 0 means none.")
    names: list[str] | None = Field(None, description="Features the model uses; default all.")
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Runs the feature, label and point-in-time SQL and batch scoring: duckdb (embedded) "
        "or spark (the `spark` settings; same results).",
    )
    chunk_dates: int = Field(8, ge=1, description="DuckDB: snapshot dates per SQL run (bounds memory).")
    memory_limit: str = Field("6GB", description="DuckDB memory limit; beyond it DuckDB spills to disk.")
    online_store: OnlineStoreConfig = OnlineStoreConfig()
    project: str = Field("flywheel", pattern=r"^[a-z][a-z0-9_]*$", description="Feast project name.")


class SparkConfig(StrictModel):
    """The Spark session of ``features.engine: spark``."""

    master: str = Field("local[*]", description="local[*]: in this process on 127.0.0.1; or a cluster URL.")
    driver_memory: str = Field("2g", description="spark.driver.memory.")
    chunk_dates: int = Field(
        8,
        ge=1,
        description="Snapshot dates per Spark SQL run: each run costs about a second to plan, and its "
        "rows come back to the driver whole (within spark.driver.maxResultSize, 1g unless set in conf).",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Further Spark settings, applied last.")


class DatasetConfig(StrictModel):
    """Training set: time-based split by label_timestamp with purge gaps."""

    train_ratio: float = Field(0.7, gt=0, lt=1)
    valid_ratio: float = Field(0.15, gt=0, lt=1)
    purge: bool = Field(True, description="Drop label dates within one horizon after each split boundary.")

    @model_validator(mode="after")
    def _ratios_leave_a_test_split(self) -> DatasetConfig:
        if self.train_ratio + self.valid_ratio >= 1:
            total = self.train_ratio + self.valid_ratio
            raise ValueError(f"train_ratio + valid_ratio must be < 1, got {total}")
        return self


ModelType = Literal["logistic_regression", "random_forest", "lightgbm", "xgboost", "catboost"]


class TuningConfig(StrictModel):
    """Hyperparameter search; each trial is a nested MLflow run."""

    method: Literal["none", "grid", "optuna"] = "optuna"
    trials: int = Field(12, ge=1, description="Optuna trials.")
    timeout_s: float | None = Field(None, gt=0, description="Optuna stops after this many seconds.")
    metric: Literal["roc_auc", "pr_auc", "log_loss", "accuracy", "macro_f1"] = "roc_auc"
    grid: dict[str, list[Any]] = Field(
        default_factory=lambda: {
            "learning_rate": [0.05, 0.1],
            "num_leaves": [15, 31],
            "min_child_samples": [20, 100],
        },
        description="Values per parameter for method=grid.",
    )


class TrainingConfig(StrictModel):
    model_type: ModelType = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed parameters of the model type.")
    baseline: ModelType = "logistic_regression"
    seed: int = 42
    threshold: float | Literal["max_f1"] = Field(
        "max_f1",
        description="Decision threshold, or chosen on valid (binary; multiclass predicts the most "
        "probable class).",
    )
    scale: Literal["none", "robust"] = Field(
        "none",
        description="Scale numeric features by the training rows' median and IQR (seed 003's RobustScaler), "
        "saved with the model so serving applies the same transform.",
    )
    calibration: Literal["isotonic", "platt", "none"] = Field(
        "isotonic",
        description="Calibrate probabilities on the validation split after fitting (multiclass: per "
        "class); the calibrated model is what is logged, gated and served.",
    )
    tuning: TuningConfig = TuningConfig()


class TrackingConfig(StrictModel):
    uri: str | None = Field(None, description="MLflow tracking URI; default sqlite:///<workdir>/mlflow.db.")
    experiment: str = Field("flywheel", description="MLflow experiment; default the use case's name.")

    @field_validator("uri")
    @classmethod
    def _empty_means_default(cls, value: str | None) -> str | None:
        return value or None


class GatesConfig(StrictModel):
    """Bounds a candidate's test metrics must meet (multiclass ROC-AUC and PR-AUC: one-vs-rest, macro)."""

    min_roc_auc: float = 0.70
    min_pr_auc: float = 0.50
    max_p99_latency_ms: float = 50.0
    max_artifact_mb: float = 100.0
    max_calibration_error: float | None = Field(
        None, gt=0, description="Upper bound on the test split's expected calibration error (ECE)."
    )
    min_metrics: dict[str, float] = Field(
        default_factory=dict, description="More lower bounds on test metrics, e.g. {macro_f1: 0.6}."
    )
    max_metrics: dict[str, float] = Field(
        default_factory=dict, description="Upper bounds on test metrics, e.g. {log_loss: 0.8}."
    )


class RegistryConfig(StrictModel):
    model_name: str = Field("flywheel-model", description="Registered model; default <use case>-model.")
    gates: GatesConfig = GatesConfig()
    compare_metric: Literal["roc_auc", "accuracy", "macro_f1", "log_loss", "brier"] = Field(
        "roc_auc", description="The metric of the paired bootstrap comparison with the champion."
    )
    min_delta: float = Field(
        0.002, description="How much better on compare_metric a challenger must be (a loss: lower by)."
    )
    bootstrap_samples: int = Field(300, ge=50)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    promotion: Literal["auto", "manual"] = Field(
        "auto", description="auto: a challenger that beats the champion is promoted; manual: it waits."
    )


class PipelineConfig(StrictModel):
    """How compiled pipelines run on real orchestrators."""

    image: str = Field("flywheel-mlops:latest", description="Container image with flywheel installed.")
    schedule: str = Field("@weekly", description="Airflow schedule of the training DAG.")
    retries: int = Field(2, ge=0)
    artifact_store: str | None = Field(
        None,
        description="Where compiled pipeline tasks stage the workdir in and out, each in a folder of its "
        "own (a path, s3://…, gs://…; fsspec); default: this workdir's path.",
    )

    @field_validator("artifact_store")
    @classmethod
    def _empty_means_default(cls, value: str | None) -> str | None:
        return value or None


class GuardsConfig(StrictModel):
    """Automatic aborts of a rollout: each service replica judges the challenger on the traffic it
    served since the rollout started, once it has ``min_predictions`` of the challenger's."""

    min_predictions: int = Field(100, ge=1, description="Challenger predictions before a guard judges.")
    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="The share of the challenger's scorings that may fail."
    )
    max_p99_ms: float = Field(50.0, gt=0, description="The challenger's p99 scoring latency, in ms.")
    max_prediction_psi: float = Field(
        0.25, gt=0, description="PSI of the challenger's scores against the champion's (prediction drift)."
    )
    min_drift_scores: int = Field(
        1000,
        ge=1,
        description="Scores of each arm before the drift guard judges: PSI over 20 bins of fewer is "
        "mostly noise (100 against 100 identical distributions pass 0.25 nine times in ten).",
    )


class RolloutConfig(StrictModel):
    """Progressive delivery of a challenger beside the champion (``flywheel rollout``)."""

    percent: float = Field(
        10.0, gt=0, le=100, description="Canary and A/B: the share of entities the challenger serves."
    )
    floor: float = Field(0.05, ge=0, le=0.5, description="Bandit: the least share of traffic an arm keeps.")
    min_effect: float = Field(
        0.02,
        gt=0,
        lt=1,
        description="A/B: the minimum detectable effect (absolute lift of the outcome rate) the "
        "required sample size is computed for.",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="A/B: the significance level of the z-test.")
    power: float = Field(0.8, gt=0, lt=1, description="A/B: the power the sample size is computed for.")
    guards: GuardsConfig = GuardsConfig()
    stages: list[Literal["shadow", "canary"]] = Field(
        default_factory=list,
        description="The loop: the rollout stages a challenger passing its gate goes through before it "
        "becomes champion (e.g. [shadow, canary]); empty: it is promoted at once.",
    )
    stage_minutes: float = Field(
        60.0, gt=0, description="The loop: how long each stage runs, with no guard firing, before the next."
    )
    stage_predictions: int = Field(
        500, ge=0, description="The loop: the challenger predictions a stage needs before the next."
    )


class CacheConfig(StrictModel):
    """The prediction cache of entities scored from their online features (``/v1/predict``, ``/batch``):
    keyed by use case, entity, the materialization and the model version, so a new materialization or
    a champion swap never returns a stale score."""

    backend: Literal["none", "local", "redis"] = Field(
        "local", description="none | local (an LRU in each worker) | redis (shared by every replica)."
    )
    max_entries: int = Field(100_000, ge=1, description="local: the entries kept (least recently used go).")
    ttl_seconds: float = Field(600.0, gt=0, description="How long an entry lives.")
    redis_url: str = Field("redis://127.0.0.1:6379/1", description="redis: the server and database.")


class ServingConfig(StrictModel):
    """The online prediction service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    risk_bands: dict[str, float] = Field(
        default_factory=lambda: {"low": 0.0, "medium": 0.4, "high": 0.7},
        description="Band name → lowest predicted probability in it.",
    )
    poll_seconds: float = Field(10.0, gt=0, description="How often the champion alias is checked.")
    admin_token: str | None = Field(None, description="Bearer token of /v1/admin/*; unset: admin disabled.")
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    cold_start: bool = Field(
        False, description="Score unknown entities from default features instead of 404."
    )
    log_flush_seconds: float = Field(0.5, gt=0, le=1.0, description="Prediction-log flush interval.")
    cache: CacheConfig = CacheConfig()
    log_name: str = Field(
        "predictions",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The prediction log's file in <workdir>/predictions/ (.db added). Hosts sharing one "
        "workdir write one each (e.g. predictions-${HOSTNAME}); monitoring reads every log there.",
    )

    @field_validator("admin_token")
    @classmethod
    def _empty_token_means_none(cls, value: str | None) -> str | None:
        return value or None


StatTestName = Literal["psi", "ks", "wasserstein", "jensenshannon", "chisquare", "jensenshannon_categorical"]


class MonitoringConfig(StrictModel):
    """Drift and delayed-label performance monitoring."""

    drift_share: float = Field(0.5, gt=0, le=1, description="Share of drifted columns that is dataset drift.")
    window_days: int = Field(30, ge=1, description="Prediction-log window of `monitor drift --source log`.")
    tests: dict[str, StatTestName] = Field(
        default_factory=dict, description="Column → statistic, overriding the choice by type and size."
    )
    period_days: int = Field(7, ge=1, description="Period of `monitor performance`, in data time.")
    estimation_sigmas: float = Field(
        3.0,
        gt=0,
        description="Width of the estimate's band, in standard deviations of the estimator's error "
        "on the test split; a realized figure outside it is a concept shift.",
    )
    clock_skew_hours: float = Field(
        24,
        ge=0,
        description="How far past now a data time (`as_of`) may lie: the service refuses a later one, "
        "and a logged one is skipped.",
    )

    def latest_data_time(self) -> datetime:
        """The latest acceptable data time (``as_of``): now plus the clock skew. The service refuses a
        later one and the log's readers skip it: one bound, spelled here."""
        return datetime.now(UTC) + timedelta(hours=self.clock_skew_hours)


class RetrainConfig(StrictModel):
    """Triggers of `flywheel retrain` and the loop; any one fired starts a retrain."""

    min_roc_auc: float = Field(0.75, description="Performance trigger: labelled ROC-AUC below this.")
    performance_metric: Literal["roc_auc", "pr_auc", "accuracy", "macro_f1"] = Field(
        "roc_auc", description="The labelled metric of the performance trigger (multiclass: e.g. macro_f1)."
    )
    min_performance: float | None = Field(
        None, description="Performance trigger: performance_metric below this (roc_auc: min_roc_auc)."
    )
    performance_source: Literal["realized", "estimated", "either"] = Field(
        "realized",
        description="What the performance trigger judges: the labelled figure, the one estimated from "
        "calibrated probabilities before labels (no labels needed), or either one below the bound.",
    )
    performance_days: int = Field(28, ge=1, description="Newest labelled data-time days the trigger uses.")
    min_labelled: int = Field(
        200, ge=1, description="Fewer labelled predictions (estimated: predictions): no performance verdict."
    )
    on_drift: bool = Field(True, description="Dataset drift of the newest snapshot starts a retrain.")
    schedule_days: float | None = Field(30, gt=0, description="Retrain when the champion is this old.")
    min_new_batches: int | None = Field(
        1, ge=1, description="Lake batches neither the champion nor the challenger was trained on."
    )
    cooldown_hours: float = Field(24, ge=0, description="No automatic retrain this soon after the last one.")
    cron: str = Field("0 2 * * *", description="Schedule of `flywheel loop` ticks (cron syntax, UTC).")

    @model_validator(mode="after")
    def _a_bound_for_the_metric(self) -> RetrainConfig:
        if self.performance_metric != "roc_auc" and self.min_performance is None:
            raise ValueError(
                f"performance_metric {self.performance_metric} needs min_performance (its bound)"
            )
        return self

    @property
    def performance_bound(self) -> float:
        """The bound of the performance trigger on ``performance_metric``."""
        return self.min_performance if self.min_performance is not None else self.min_roc_auc

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r} (expected e.g. '0 2 * * *')")
        return value


class AlertsConfig(StrictModel):
    """Alerts on drift, performance drops, failed gates and failed retrains."""

    webhook_url: str | None = Field(None, description="Slack-compatible webhook; unset: log only.")
    timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _empty_url_means_none(cls, value: str | None) -> str | None:
        return value or None


class IngestConfig(StrictModel):
    """`flywheel data ingest` of real exports."""

    clock_skew_hours: float = Field(
        24, ge=0, description="A batch with a timestamp later than now plus this is rejected."
    )
    max_quarantine_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A file whose reader quarantines a larger share of its rows is rejected whole.",
    )


class ExtractConfig(StrictModel):
    """Where the use case's templated extraction (seed 003) runs: DuckDB over the lake, or MySQL."""

    source: Literal["duckdb", "mysql"] = "duckdb"
    url: str | None = Field(
        None, description="SQLAlchemy URL of the MySQL/MariaDB source, e.g. mysql+pymysql://u:p@host/db."
    )
    lookback_months: int = Field(
        1, ge=1, le=120, description="Months of records each logical date extracts (seed 003: one)."
    )

    @model_validator(mode="after")
    def _mysql_needs_a_url(self) -> ExtractConfig:
        if self.source == "mysql" and not self.url:
            raise ValueError("source mysql needs a url (mysql+pymysql://user:password@host:port/database)")
        return self


class LakeConfig(StrictModel):
    """How a new lake keeps its raw tables (an existing lake keeps the format it was made in)."""

    format: Literal["parquet", "iceberg"] = Field(
        "parquet",
        description="parquet: files and a manifest; iceberg: Iceberg tables, a snapshot per batch.",
    )
    catalog: dict[str, str] = Field(
        default_factory=dict,
        description="pyiceberg catalog properties (type, uri, warehouse, …); empty: a SQLite catalog "
        "and a file warehouse in the workdir's lake.",
    )
    namespace: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The Iceberg namespace of a new lake's tables; default flywheel (the embedded catalog) "
        "or flywheel_<use case> (a configured one). Lakes sharing one catalog each need their own.",
    )
    keep_batches: int = Field(
        100, ge=1, description="`flywheel data expire`: the newest batches whose snapshots are kept."
    )


class DataConfig(StrictModel):
    generator: Settings = Settings()
    simulate: SimulateConfig = SimulateConfig()
    ingest: IngestConfig = IngestConfig()
    extract: ExtractConfig = ExtractConfig()


class FlywheelConfig(StrictModel):
    """Root configuration of one use case."""

    use_case: str = Field(DEFAULT_USE_CASE, description="A built-in use case's name or a dotted path.")
    workdir: str = Field(".flywheel", description="Root folder of all state; FLYWHEEL_WORKDIR overrides.")
    data: DataConfig = DataConfig()
    lake: LakeConfig = LakeConfig()
    features: FeaturesConfig = FeaturesConfig()
    spark: SparkConfig = SparkConfig()
    labels: LabelSettings = LabelSettings()
    dataset: DatasetConfig = DatasetConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    pipeline: PipelineConfig = PipelineConfig()
    serving: ServingConfig = ServingConfig()
    rollout: RolloutConfig = RolloutConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retrain: RetrainConfig = RetrainConfig()
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _label_dates_fall_on_snapshot_dates(self) -> FlywheelConfig:
        if self.labels.cadence_days is not None and self.labels.cadence_days % self.features.cadence_days:
            raise ValueError(
                f"labels.cadence_days ({self.labels.cadence_days}) must be a multiple of "
                f"features.cadence_days ({self.features.cadence_days})"
            )
        return self

    @model_validator(mode="after")
    def _metrics_the_task_has(self) -> FlywheelConfig:
        """A binary model's probabilities alone (the comparison, the log) have no decisions to count:
        accuracy and macro-F1 are multiclass metrics here (the most probable class)."""
        if self.spec.classes:
            return self
        chosen = {
            "training.tuning.metric": self.training.tuning.metric,
            "registry.compare_metric": self.registry.compare_metric,
            "retrain.performance_metric": self.retrain.performance_metric,
        }
        wrong = {key: value for key, value in chosen.items() if value in MULTICLASS_ONLY}
        if wrong:
            problems = ", ".join(f"{key} {value}" for key, value in wrong.items())
            raise ValueError(
                f"{problems}: a multiclass metric, but use case {self.use_case} is binary; expected "
                "roc_auc, pr_auc or log_loss (brier for the comparison)"
            )
        return self

    @property
    def spec(self) -> UseCase:
        """The use case this config runs (imported on first use)."""
        return usecases.load(self.use_case)


@functools.cache
def config_class(use_case: str) -> type[FlywheelConfig]:
    """The root config model of ``use_case``: its own ``labels`` and ``data.generator`` sections and
    drift scenario names, typed and strict like the rest."""
    spec = usecases.load(use_case)
    scenarios = tuple(spec.generator.scenarios)
    simulate = create_model(
        f"{spec.name.title()}SimulateConfig",
        __base__=SimulateConfig,
        drift=(Literal[scenarios], Field(scenarios[0], description="Drift scenario of the new period.")),
    )
    data = create_model(
        f"{spec.name.title()}DataConfig",
        __base__=DataConfig,
        generator=(spec.generator_settings, spec.generator_settings()),
        simulate=(simulate, simulate()),
    )
    return create_model(
        f"{spec.name.title()}Config",
        __base__=FlywheelConfig,
        data=(data, data()),
        labels=(spec.label_settings, spec.label_settings()),
    )


def _defaults(use_case: str) -> dict[str, Any]:
    """Config values a use case implies when its file does not set them: its own experiment,
    registered model and workdir, then the use case's own defaults."""
    spec = usecases.load(use_case)
    implied = {
        "workdir": f".flywheel-{spec.name}",
        "tracking": {"experiment": spec.name},
        "registry": {"model_name": f"{spec.name}-model"},
    }
    return _merge(implied, spec.defaults)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def default_config(use_case: str = DEFAULT_USE_CASE, **overrides: Any) -> FlywheelConfig:
    """The built-in defaults of ``use_case`` (no file), with dotted-key overrides."""
    config = _validate({"use_case": use_case}, "built-in defaults")
    return apply_overrides(config, overrides)


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, source: str, where: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, source, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if os.environ.get(name) or (name in os.environ and default is None):
            return os.environ[name]
        if default is not None:  # as in a shell: ${NAME:-default} when NAME is unset or empty
            return default
        raise ConfigError(f"{source}: {where}: environment variable {name} is not set and has no default")

    return _ENV_PATTERN.sub(substitute, value)


# fields whose values are credentials (a Slack webhook URL is one): never echoed in an error
_SECRET_FIELD = re.compile(r"token|password|secret|webhook|connection_string|extract\.url", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _shown_input(loc: str, value: Any) -> str:
    """What an error says it got: never a section (a root or model-level error's input is the whole
    section, secrets included), never a credential, never more than a line."""
    if isinstance(value, dict):
        return ""
    if _SECRET_FIELD.search(loc):
        return " (got ***)"
    text = repr(value)
    if "url" in loc.lower() or "uri" in loc.lower():
        text = _URL_USERINFO.sub("***@", text)
    return f" (got {text[:80]}{'…' if len(text) > 80 else ''})"


def _format_errors(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "(root)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{loc}'")
        else:
            lines.append(f"{source}: {loc}: {item['msg']}{_shown_input(loc, item.get('input'))}")
    return "; ".join(lines)


def _validate(raw: dict[str, Any], source: str) -> FlywheelConfig:
    use_case = raw.get("use_case", DEFAULT_USE_CASE)
    if not isinstance(use_case, str):
        raise ConfigError(f"{source}: use_case: expected a name or a dotted path (got {use_case!r})")
    try:
        cls = config_class(use_case)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    try:
        return cls.model_validate(_merge(_defaults(use_case), raw))
    except ValidationError as error:
        raise ConfigError(_format_errors(error, source)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> FlywheelConfig:
    """Load a config file (or the built-in defaults) and apply dotted-key overrides.

    Args:
        path: YAML file. ``None`` means ``FLYWHEEL_CONFIG``, else ``DEFAULT_CONFIG_PATH`` when it
            exists, else the built-in defaults of the default use case.
        overrides: ``{"data.generator.seed": 7}``-style values applied after the file.
    """
    if path is None:
        env_path = os.environ.get("FLYWHEEL_CONFIG")
        path = Path(env_path) if env_path else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    raw: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{source}: cannot read config file ({error.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not a text file; expected a UTF-8 YAML config") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level, got {type(loaded).__name__}")
        raw = _expand_env(loaded or {}, source)
    config = _validate(raw, source)
    return apply_overrides(config, overrides or {})


def apply_overrides(config: FlywheelConfig, overrides: dict[str, Any]) -> FlywheelConfig:
    """Return a copy of ``config`` with dotted keys replaced; unknown keys raise ConfigError."""
    if not overrides:
        return config
    if overrides.get("use_case", config.use_case) != config.use_case:
        raise ConfigError(
            f"override use_case: a config's use case is fixed ({config.use_case}); "
            f"pass the use case's config file instead, e.g. --config configs/{overrides['use_case']}.yaml"
        )
    raw = config.model_dump(mode="json")
    for key, value in overrides.items():
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {key}: unknown key '{part}'")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {key}: unknown key '{parts[-1]}'")
        node[parts[-1]] = value
    return _validate(raw, "overrides")


def config_hash(config: FlywheelConfig) -> str:
    """Stable short hash of the effective configuration, for tagging runs and datasets."""
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:12]
