"""Bank marketing end to end: UCI files ingested as published, the macro view point-in-time, the
service's contact-record API, and the month-by-month replay of a file through the loop."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flywheel.config import FlywheelConfig, default_config
from flywheel.data import ops
from flywheel.data.lake import Lake
from flywheel.errors import DataError
from flywheel.features import dataset
from flywheel.features import ops as feature_ops
from flywheel.usecases.bank.generator import GeneratorSettings, generate_batch
from flywheel.usecases.bank.uci import write_uci
from flywheel.workdir import Workdir

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "bank.yaml"
SMALL = {
    "data.generator.clients": 1500,
    "data.generator.contacts_per_month": 400,
    "data.generator.start": date(2008, 5, 1),
    "data.generator.end": date(2009, 9, 1),
    "registry.gates.max_p99_latency_ms": 60_000.0,
    "training.tuning.method": "none",
}


def bank_config(**overrides: object) -> FlywheelConfig:
    return default_config("bank", **SMALL, **overrides)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[FlywheelConfig, Workdir]:
    """A small generated bank lake, its features and training set, and a champion published."""
    from flywheel.pipeline.runner import run_pipeline

    config = bank_config()
    workdir = Workdir.at(tmp_path_factory.mktemp("bank") / "wd")
    ops.generate(config, workdir)
    feature_ops.build(config, workdir)
    assert run_pipeline(config, workdir).status == "SUCCEEDED"
    return config, workdir


@pytest.mark.parametrize("layout", ["full", "additional"])
def test_a_published_uci_file_ingests_as_it_is(layout: str, tmp_path: Path) -> None:
    """`flywheel --config configs/bank.yaml data ingest bank-*.csv`: the file as published (quoted,
    `;`-separated, no year) becomes contacts with reconstructed dates, and macro rows for the
    additional layout; the training set builds from it."""
    contacts = generate_batch(
        GeneratorSettings(clients=300, contacts_per_month=60, end=date(2009, 9, 1))
    ).tables["contacts"]
    path = tmp_path / f"bank-{layout}-full.csv"
    write_uci(contacts, path, layout)
    assert path.read_text().startswith('"age";"job";"marital"')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flywheel",
            "--config",
            str(CONFIG),
            "--workdir",
            str(tmp_path / "wd"),
            "data",
            "ingest",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lake = Lake(Workdir.at(tmp_path / "wd"), default_config("bank").spec)
    ingested = lake.read("contacts")
    assert ingested.num_rows == contacts.num_rows
    assert ingested.column("client_id").null_count == ingested.num_rows  # the files carry no client key
    assert (lake.read("macro").num_rows > 0) == (layout == "additional")
    if layout == "full":  # bank-full has the day: the dates are exactly the contacts' dates
        days = pd.to_datetime(contacts.column("contact_at").to_pandas()).dt.floor("D")
        assert (pd.to_datetime(ingested.column("contact_at").to_pandas()) == days).all()


def test_a_file_whose_months_go_back_is_rejected_naming_the_row(tmp_path: Path) -> None:
    header = '"age";"job";"marital";"education";"default";"balance";"housing";"loan";"contact";"day";"month";'
    header += '"duration";"campaign";"pdays";"previous";"poutcome";"y"'
    row = '58;"management";"married";"tertiary";"no";2143;"yes";"no";"unknown";{day};"{month}";'
    row += '261;1;-1;0;"unknown";"no"'
    lines = [
        header,
        row.format(day=5, month="jun"),
        row.format(day=6, month="jun"),
        row.format(day=7, month="may"),
    ]
    path = tmp_path / "bank-full.csv"
    path.write_text("\n".join(lines) + "\n")
    workdir = Workdir.at(tmp_path / "wd")
    with pytest.raises(Exception, match=r"row 3 .*month 'may' after 'jun'"):
        ops.ingest(default_config("bank").spec, workdir, [path])
    assert Lake(workdir, default_config("bank").spec).is_empty()


def test_the_macro_view_joins_the_indicators_published_by_each_contact(served) -> None:
    """Each training row carries the indicators of the latest macro row published at or before its
    contact — never a later one — and no row carries `duration`."""
    config, workdir = served
    macro = Lake(workdir, config.spec).read("macro").to_pandas().sort_values("published_at")
    folder = dataset.latest(workdir)
    rows = pd.concat(pq.read_table(folder / f"{s}.parquet").to_pandas() for s in ("train", "valid", "test"))
    rows = rows.sort_values("label_timestamp")
    expected = pd.merge_asof(
        rows[["contact_id", "label_timestamp"]],
        macro,
        left_on="label_timestamp",
        right_on="published_at",
        direction="backward",
    )
    got = rows.set_index("contact_id")["euribor3m"]
    assert (got.loc[expected["contact_id"]].to_numpy() == expected["euribor3m"].to_numpy()).all()
    assert "duration" not in rows.columns


def test_the_service_takes_the_contact_record_a_caller_has(served) -> None:
    from flywheel.serving.local import call, local_service

    config, workdir = served
    example = dict(config.spec.api.example)
    with local_service(config, workdir) as url:
        answer = call(f"{url}/v1/predict?explain=features", example)
        assert answer["contact_id"] == example["contact_id"] and 0 <= answer["subscribe_probability"] <= 1
        assert answer["propensity_band"] in config.serving.risk_bands and answer["request_id"]
        assert answer["features"]["euribor3m"] is not None  # the macro view, served online
        assert answer["features"]["job"] == example["job"]
        batch = call(f"{url}/v1/predict/batch", {"records": [example, {**example, "contact_id": 2}]})
        assert [p["contact_id"] for p in batch["predictions"]] == [example["contact_id"], 2]
        schema = call(f"{url}/openapi.json")["components"]["schemas"]["PredictRequest"]
        assert "duration" not in schema["properties"] and "technician" in schema["properties"]["job"]["enum"]
        for broken, field in (
            ({**example, "job": "pilot"}, "job"),
            ({k: v for k, v in example.items() if k != "age"}, "age"),
        ):
            with pytest.raises(Exception, match=f"422.*{field}"):
                call(f"{url}/v1/predict", broken)


def test_a_file_replays_month_by_month_through_the_loop(tmp_path: Path) -> None:
    """Warm-up months train the first champion; each later month is ingested, scored through the
    service before its outcomes count, and retrained on."""
    from flywheel.retraining import replay

    contacts = generate_batch(
        GeneratorSettings(clients=1500, contacts_per_month=400, end=date(2009, 8, 1))
    ).tables["contacts"]
    path = tmp_path / "bank-additional-full.csv"
    write_uci(contacts, path, "additional")
    config = bank_config()
    workdir = Workdir.at(tmp_path / "wd")
    result = replay.replay(config, workdir, path, warmup_months=13, months=2)
    assert [m.month for m in result.months] == ["2009-06", "2009-07"]
    for month in result.months:
        assert month.rows > 300 and month.roc_auc is not None and month.served_version
        assert month.decision.startswith(("promoted", "kept")), month.reason
    with pytest.raises(DataError, match="already holds data"):  # a replay starts a new lake
        replay.replay(config, workdir, path, warmup_months=13, months=1)
    assert [b["batch_id"] for b in ops.status(config.spec, workdir)] == [
        "replay-2008-05-2009-05",
        "replay-2009-06",
        "replay-2009-07",
    ]
