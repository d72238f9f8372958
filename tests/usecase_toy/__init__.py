"""A use case defined outside the package: machine failures from sensor readings.

It is the worked example of adding a use case (README, "Adding a use case") and the proof that the
interface is complete: `use_case: tests.usecase_toy` runs generate → validate → features → train →
register → serve → monitor without any edit to ``src/flywheel``. A machine fails at time t when a
failure is recorded in ``(t, t + horizon]``; features are weekly snapshots of its recent readings.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
from pydantic import Field

from flywheel.data.batch import Batch
from flywheel.data.schema import TIMESTAMP, ColumnSpec, ForeignKey, TableSpec
from flywheel.errors import DataError
from flywheel.usecases.spec import ApiSpec, Entity, FeatureView, LabelSettings, LabelSpec, Settings, UseCase

DAY_US = 86_400_000_000
MACHINES = TableSpec(
    "machines",
    "machine_id",
    (
        ColumnSpec("machine_id", pa.int64()),
        ColumnSpec("model", pa.string(), allowed=("A", "B", "C")),
        ColumnSpec("installed_at", TIMESTAMP),
    ),
    time_column="installed_at",
)
READINGS = TableSpec(
    "readings",
    "reading_id",
    (
        ColumnSpec("reading_id", pa.int64()),
        ColumnSpec("machine_id", pa.int64()),
        ColumnSpec("read_at", TIMESTAMP),
        ColumnSpec("temperature", pa.float64(), min_value=-50, max_value=200),
        ColumnSpec("vibration", pa.float64(), min_value=0),
    ),
    foreign_keys=(ForeignKey("machine_id", "machines", "machine_id"),),
    time_column="read_at",
)
FAILURES = TableSpec(
    "failures",
    "failure_id",
    (
        ColumnSpec("failure_id", pa.int64()),
        ColumnSpec("machine_id", pa.int64()),
        ColumnSpec("failed_at", TIMESTAMP),
    ),
    foreign_keys=(ForeignKey("machine_id", "machines", "machine_id"),),
    time_column="failed_at",
)


class ToySettings(Settings):
    machines: int = Field(300, ge=10)
    start: date = date(2024, 1, 1)
    days: int = Field(240, ge=60)
    seed: int = 3


class FailureLabels(LabelSettings):
    horizon_days: int = Field(14, ge=1)
    cadence_days: int = Field(7, ge=1)

    @property
    def label_column(self) -> str:
        return f"label_failure_{self.horizon_days}d"


def _tables(
    settings: ToySettings,
    start_day: float,
    days: int,
    first_id: int,
    rng: np.random.Generator,
    wear: np.ndarray,
    heat: float = 0.0,
) -> tuple[dict[str, pa.Table], np.ndarray]:
    """Daily readings of every machine over ``days``; a machine's wear drives temperature, vibration
    and the chance it fails; a failure resets its wear."""
    n = len(wear)
    machine, when, temp, vib, fails = [], [], [], [], []
    for day in range(days):
        wear = wear + rng.gamma(2.0, 0.01, n)
        moment = int((start_day + day) * DAY_US) + rng.integers(0, DAY_US // 2, n)
        machine.append(np.arange(1, n + 1))
        when.append(moment)
        temp.append(60 + 25 * wear + heat + rng.normal(0, 3, n))
        vib.append(np.abs(0.5 + 2 * wear + rng.normal(0, 0.3, n)))
        failed = rng.random(n) < 1 / (1 + np.exp(-(8 * wear - 9)))
        fails.extend((i + 1, int(moment[i]) + DAY_US // 2) for i in np.flatnonzero(failed))
        wear = np.where(failed, 0.0, wear)
    machine, when = np.concatenate(machine), np.concatenate(when)
    readings = pa.table(
        {
            "reading_id": np.arange(first_id, first_id + len(machine)),
            "machine_id": machine,
            "read_at": pa.array(when, TIMESTAMP),
            "temperature": np.concatenate(temp),
            "vibration": np.concatenate(vib),
        },
        schema=READINGS.arrow_schema,
    )
    base = first_id  # failure ids follow the reading ids' numbering space of this batch
    failures = pa.table(
        {
            "failure_id": np.arange(base, base + len(fails), dtype=np.int64),
            "machine_id": np.array([f[0] for f in fails], dtype=np.int64),
            "failed_at": pa.array(np.array([f[1] for f in fails], dtype=np.int64), TIMESTAMP),
        },
        schema=FAILURES.arrow_schema,
    )
    return {"readings": readings, "failures": failures}, wear


class ToyGenerator:
    scenarios = ("none", "heatwave")

    def generation_id(self, settings: ToySettings) -> str:
        return f"toy-{settings.start:%Y%m%d}-{settings.days}d-m{settings.machines}-s{settings.seed}"

    def generate(self, settings: ToySettings, batch_id: str) -> Batch:
        rng = np.random.default_rng([settings.seed, 0])
        start_day = (np.datetime64(settings.start) - np.datetime64("1970-01-01")).astype(int)
        wear = rng.uniform(0, 0.8, settings.machines)
        machines = pa.table(
            {
                "machine_id": np.arange(1, settings.machines + 1),
                "model": rng.choice(["A", "B", "C"], settings.machines),
                "installed_at": pa.array(np.full(settings.machines, start_day * DAY_US), TIMESTAMP),
            },
            schema=MACHINES.arrow_schema,
        )
        tables, wear = _tables(settings, start_day, settings.days, 1, rng, wear)
        return self._batch(
            batch_id,
            "generate",
            start_day,
            settings.days,
            {"machines": machines, **tables},
            wear,
            {
                "seed": settings.seed,
                "sequence": 0,
                "drift": "none",
                "next_id": tables["readings"].num_rows + tables["failures"].num_rows + 1,
            },
        )

    def simulate(self, lake, previous, days, drift, batch_id):
        if drift not in self.scenarios:
            raise DataError(f"unknown drift scenario '{drift}'; expected one of: {', '.join(self.scenarios)}")
        generator = previous["generator"]
        sequence = generator["sequence"] + 1
        rng = np.random.default_rng([generator["seed"], sequence])
        wear = lake.read_state(previous).column("wear").to_numpy().copy()
        start_day = int(np.datetime64(previous["period"]["end"][:10]).astype("datetime64[D]").astype(int))
        tables, wear = _tables(
            ToySettings(),
            start_day,
            days,
            generator["next_id"],
            rng,
            wear,
            heat=15.0 if drift == "heatwave" else 0.0,
        )
        bookkeeping = {
            **generator,
            "sequence": sequence,
            "drift": drift,
            "next_id": generator["next_id"] + tables["readings"].num_rows + tables["failures"].num_rows,
        }
        return self._batch(
            batch_id or f"sim-{sequence}", "simulate", start_day, days, tables, wear, bookkeeping
        )

    @staticmethod
    def _batch(batch_id, kind, start_day, days, tables, wear, generator) -> Batch:
        from datetime import UTC, datetime, timedelta

        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(start_day))
        return Batch(
            batch_id=batch_id,
            kind=kind,
            period_start=start,
            period_end=start + timedelta(days=days),
            tables=tables,
            state=pa.table({"wear": wear}),
            generator=generator,
        )


MACHINE = Entity(name="machine", join_key="machine_id", description="A machine on the shop floor.")

USE_CASE = UseCase(
    name="toy",
    package=__name__,
    tables={"machines": MACHINES, "readings": READINGS, "failures": FAILURES},
    table_order=("machines", "readings", "failures"),
    relation_checks=(
        (
            "reading_before_install",
            "readings",
            "read_at",
            "a reading cannot precede its machine's installation",
            "SELECT r.* FROM readings_batch r JOIN machines_all m USING (machine_id) "
            "WHERE r.read_at < m.installed_at",
        ),
    ),
    entity=MACHINE,
    snapshot=FeatureView(
        name="features_machine",
        sql="features_machine.sql",
        entity=MACHINE,
        description="Weekly sensor summaries per machine.",
        start_sql="SELECT min(read_at) + INTERVAL 7 DAY FROM readings",
    ),
    labels=LabelSpec(
        sql="labels_machine_failure.sql",
        observed_sql="SELECT min(read_at), max(read_at) FROM readings",
    ),
    api=ApiSpec(
        title="Toy machine failures",
        description="Failure probabilities of machines.",
        score_field="failure_probability",
        example_id=1,
    ),
    label_settings=FailureLabels,
    generator_settings=ToySettings,
    generator=ToyGenerator(),
    state_table="machine_state",
    size_setting="machines",
    defaults={
        "features": {"anchor": "2024-01-01", "cadence_days": 7, "ttl_days": 14},
        "training": {"model_type": "lightgbm", "tuning": {"method": "none"}},
        "registry": {"gates": {"min_roc_auc": 0.6, "min_pr_auc": 0.05}},
    },
)
