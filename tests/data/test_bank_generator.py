"""Data expectations of the synthetic bank-marketing history, checked independently of the generator."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from flywheel.data.batch import Batch
from flywheel.data.duck import connect
from flywheel.errors import DataError
from flywheel.usecases.bank.generator import (
    DRIFT_SCENARIOS,
    STATE_SCHEMA,
    GeneratorSettings,
    generate_batch,
    generation_id,
    simulate_batch,
)
from flywheel.usecases.bank.tables import DAYS_OF_WEEK, INDICATORS, MONTHS, RELATION_CHECKS, TABLES

SMALL = GeneratorSettings(
    clients=500, start=date(2009, 1, 1), end=date(2009, 7, 15), contacts_per_month=250, seed=3
)
DEC_2010 = datetime(2010, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history() -> Batch:
    return generate_batch(GeneratorSettings())


@pytest.fixture(scope="module")
def simulated(history: Batch) -> dict[str, Batch]:
    return {
        drift: simulate_batch(history.state, history.generator, DEC_2010, 61, drift)
        for drift in DRIFT_SCENARIOS
    }


def _con(*batches: Batch) -> duckdb.DuckDBPyConnection:
    """``contacts`` and ``macro`` of the batches together, plus the views validation's checks use."""
    con = connect()
    for name in ("contacts", "macro"):
        con.register(f"{name}_arrow", pa.concat_tables([batch.tables[name] for batch in batches]))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_arrow")
        con.execute(f"CREATE VIEW {name}_batch AS SELECT * FROM {name}_arrow")
        con.execute(f"CREATE VIEW {name}_all AS SELECT * FROM {name}_arrow")
    return con


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0]


# Per contact: the client's history in earlier months, recomputed from the contacts themselves.
HISTORY_MISMATCHES = """
WITH c AS (
    SELECT *, date_trunc('month', contact_at) AS m, CAST(contact_at AS DATE) AS d,
        row_number() OVER (PARTITION BY client_id, date_trunc('month', contact_at)
            ORDER BY contact_at, contact_id) AS rank
    FROM contacts
), months AS (
    SELECT client_id, m, count(*) AS calls, max(d) AS last_day, bool_or(y = 'yes') AS won
    FROM c GROUP BY client_id, m
), history AS (
    SELECT client_id, m,
        coalesce(sum(calls) OVER (PARTITION BY client_id ORDER BY m
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS previous,
        lag(last_day) OVER (PARTITION BY client_id ORDER BY m) AS previous_day,
        lag(won) OVER (PARTITION BY client_id ORDER BY m) AS previous_won
    FROM months
)
SELECT c.* FROM c JOIN history h USING (client_id, m)
WHERE c.previous <> h.previous
    OR c.pdays IS DISTINCT FROM (c.d - h.previous_day)
    OR c.poutcome <> CASE WHEN h.previous_won IS NULL THEN 'nonexistent'
                          WHEN h.previous_won THEN 'success' ELSE 'failure' END
    OR c.campaign <> c.rank
"""


def test_generation_is_deterministic() -> None:
    first, second = generate_batch(SMALL), generate_batch(SMALL)
    assert first.batch_id == second.batch_id == generation_id(SMALL)
    for name in ("macro", "contacts"):
        assert first.tables[name].equals(second.tables[name]), name
    assert first.state.equals(second.state) and first.generator == second.generator
    again = [simulate_batch(first.state, first.generator, first.period_end, 20, "rate_cut") for _ in range(2)]
    assert all(again[0].tables[name].equals(again[1].tables[name]) for name in ("macro", "contacts"))
    assert generate_batch(SMALL.model_copy(update={"seed": 4})).tables["contacts"] != first.tables["contacts"]


def test_tables_have_the_lake_schemas_and_the_bookkeeping_is_json(history: Batch) -> None:
    assert history.kind == "generate"
    assert history.batch_id == "bank-gen-20080501-20101201-s42-c8000-m1400-v1"
    for name, table in history.tables.items():
        assert table.schema.equals(TABLES[name].arrow_schema), name
        for column in TABLES[name].columns:
            if not column.nullable:
                assert table.column(column.name).null_count == 0, f"{name}.{column.name}"
    assert history.state.schema.equals(STATE_SCHEMA)
    assert json.loads(json.dumps(history.generator)) == history.generator
    contacts = history.tables["contacts"]
    assert history.generator["next_ids"] == {"clients": 8001, "contacts": contacts.num_rows + 1}
    assert contacts.column("contact_id").to_pylist() == list(range(1, contacts.num_rows + 1))


def test_values_respect_the_published_vocabularies_and_ranges(history: Batch) -> None:
    contacts = history.tables["contacts"]
    for column in TABLES["contacts"].columns:
        values = contacts.column(column.name).drop_null()
        if column.allowed is not None:
            assert pc.all(pc.is_in(values, pa.array(column.allowed))).as_py(), column.name
        if column.min_value is not None:
            assert pc.min(values).as_py() >= column.min_value, column.name
        if column.max_value is not None:
            assert pc.max(values).as_py() <= column.max_value, column.name


def test_about_one_contact_in_nine_subscribes_more_later_in_the_crisis(history: Batch) -> None:
    con = _con(history)
    by_year = dict(
        con.execute("SELECT year(contact_at), avg((y = 'yes')::INT) FROM contacts GROUP BY 1").fetchall()
    )
    overall = con.execute("SELECT avg((y = 'yes')::INT) FROM contacts").fetchall()[0][0]
    assert 0.08 <= overall <= 0.14
    assert by_year[2008] < by_year[2009] < by_year[2010]
    assert 40_000 <= history.tables["contacts"].num_rows <= 47_000  # 31 months of ~1,400 contacts


def test_macro_follows_the_crisis_and_is_published_monthly(history: Batch) -> None:
    macro = history.tables["macro"].to_pylist()
    assert [row["published_at"] for row in macro] == [
        datetime(2008 + (4 + i) // 12, (4 + i) % 12 + 1, 1, tzinfo=UTC) for i in range(31)
    ]
    first, last = macro[0], macro[-1]
    assert 4.5 <= first["euribor3m"] <= 5.5 and 0.5 <= last["euribor3m"] <= 1.5
    assert first["emp_var_rate"] > 1.0 and last["emp_var_rate"] < -2.5
    assert first["nr_employed"] > 5200 and last["nr_employed"] < 4980
    assert all(92 <= row["cons_price_idx"] <= 95 and -50 <= row["cons_conf_idx"] <= -30 for row in macro)


def test_contacts_fall_on_working_hours_inside_the_period(history: Batch) -> None:
    moments = history.tables["contacts"].column("contact_at").to_pylist()
    assert all(history.period_start <= m < history.period_end for m in moments)
    assert all(m.weekday() < 5 and 9 <= m.hour < 18 for m in moments)
    assert moments == sorted(moments)


def test_calendar_and_indicator_columns_agree_with_contact_at_and_macro(history: Batch) -> None:
    con = _con(history)
    con.register("months", pa.table({"n": list(range(1, 13)), "name": list(MONTHS)}))
    con.register("weekdays", pa.table({"n": list(range(1, 6)), "name": list(DAYS_OF_WEEK)}))
    calendar = """
        SELECT c.* FROM contacts c JOIN months mo ON mo.n = month(c.contact_at)
        JOIN weekdays w ON w.n = isodow(c.contact_at)
        WHERE c.month <> mo.name OR c.day <> day(c.contact_at) OR c.day_of_week <> w.name
    """
    assert _count(con, calendar) == 0
    unmatched = " OR ".join(f"c.{name} <> m.{name}" for name in INDICATORS)
    latest = (
        f"SELECT c.* FROM contacts c ASOF JOIN macro m ON c.contact_at >= m.published_at WHERE {unmatched}"
    )
    assert _count(con, latest) == 0
    assert (
        _count(con, "SELECT * FROM contacts")
        == con.execute(
            "SELECT count(*) FROM contacts c ASOF JOIN macro m ON c.contact_at >= m.published_at"
        ).fetchall()[0][0]
    )


def test_contact_history_matches_each_clients_earlier_contacts(history: Batch) -> None:
    con = _con(history)
    assert _count(con, HISTORY_MISMATCHES) == 0
    assert _count(con, "SELECT * FROM contacts WHERE previous > 0") > 10_000  # the check is not vacuous
    assert _count(con, "SELECT * FROM contacts WHERE poutcome = 'success'") > 500
    # a campaign stops at the subscription: one yes at most, on the client's last call of the month
    stops = """
        SELECT client_id FROM contacts GROUP BY client_id, date_trunc('month', contact_at)
        HAVING count(*) FILTER (WHERE y = 'yes') > 1
            OR (count(*) FILTER (WHERE y = 'yes') = 1
                AND max(campaign) <> max(campaign) FILTER (WHERE y = 'yes'))
    """
    assert _count(con, stops) == 0


def test_relation_checks_pass_on_generated_data_and_catch_violations(history: Batch) -> None:
    con = _con(history)
    for check, _, _, _, sql in RELATION_CHECKS:
        assert _count(con, sql) == 0, check
    broken = connect()
    contacts = history.tables["contacts"].slice(history.tables["contacts"].num_rows - 50)  # November 2010
    index = contacts.schema.get_field_index("previous")
    broken.register("contacts_batch", contacts.set_column(index, "previous", pa.array([0] * 50)))
    broken.register("macro_all", history.tables["macro"].slice(0, 0))  # nothing published
    counts = {check: _count(broken, sql) for check, _, _, _, sql in RELATION_CHECKS}
    assert counts["macro_missing"] == 50
    assert counts["pdays_without_previous"] == pc.sum(pc.is_valid(contacts.column("pdays"))).as_py() > 0


def test_simulation_continues_ids_history_and_the_macro_path(
    history: Batch, simulated: dict[str, Batch]
) -> None:
    batch = simulated["none"]
    assert batch.kind == "simulate" and batch.batch_id == "sim-20101201-20110131"
    assert batch.generator["sequence"] == 1 and batch.generator["drift"] == "none"
    contacts = batch.tables["contacts"]
    first_id = history.generator["next_ids"]["contacts"]
    assert contacts.column("contact_id").to_pylist() == list(range(first_id, first_id + contacts.num_rows))
    assert [row["published_at"] for row in batch.tables["macro"].to_pylist()] == [
        DEC_2010,
        datetime(2011, 1, 1, tzinfo=UTC),
    ]
    for name, table in batch.tables.items():
        moments = table.column(TABLES[name].time_column).to_pylist()
        assert all(batch.period_start <= m < batch.period_end for m in moments)
    con = _con(history, batch)
    assert _count(con, HISTORY_MISMATCHES) == 0  # previous and pdays count the generated history
    returning = f"SELECT * FROM contacts WHERE contact_id >= {first_id} AND previous > 0"
    assert _count(con, returning) > 100


def test_a_period_starting_mid_month_continues_its_campaigns_and_indicators() -> None:
    first = generate_batch(SMALL)  # ends 2009-07-15
    second = simulate_batch(first.state, first.generator, first.period_end, 30, "none")
    assert second.tables["macro"].column("published_at").to_pylist() == [datetime(2009, 8, 1, tzinfo=UTC)]
    con = _con(first, second)
    assert _count(con, HISTORY_MISMATCHES) == 0  # campaign ranks go on across the two batches
    july = "SELECT * FROM contacts WHERE contact_at >= '2009-07-15' AND month = 'jul' AND campaign > 1"
    assert _count(con, july) > 0
    assert (
        _count(
            con,
            "SELECT * FROM contacts c ASOF JOIN macro m ON c.contact_at >= m.published_at "
            "WHERE c.euribor3m <> m.euribor3m",
        )
        == 0
    )


def _share(batch: Batch, predicate: pa.Array) -> float:
    return pc.mean(pc.cast(predicate, pa.float64())).as_py()


def test_each_drift_changes_what_it_says(history: Batch, simulated: dict[str, Batch]) -> None:
    none, cut = simulated["none"], simulated["rate_cut"]
    euribor = {k: pc.mean(b.tables["contacts"].column("euribor3m")).as_py() for k, b in simulated.items()}
    assert euribor["rate_cut"] < euribor["none"] - 1.0
    assert pc.max(cut.tables["macro"].column("euribor3m")).as_py() < 0.0
    assert cut.generator["macro"]["euribor_shift"] == -1.5  # the cut persists in later batches
    savers = pc.greater_equal(history.state.column("balance"), 1500)
    raised = pc.subtract(cut.state.column("propensity"), none.state.column("propensity"))
    assert pc.min(pc.filter(raised, savers)).as_py() == pytest.approx(0.5)
    assert pc.max(pc.filter(raised, savers)).as_py() == pytest.approx(0.5)
    assert pc.max(pc.abs(pc.filter(raised, pc.invert(savers)))).as_py() == 0.0

    phone = {
        k: _share(b, pc.equal(b.tables["contacts"].column("contact"), "telephone"))
        for k, b in simulated.items()
    }
    assert phone["channel_shift"] > phone["none"] + 0.3

    joined = simulated["new_segment"]
    assert joined.state.num_rows == history.state.num_rows * 3 // 2
    contacts = joined.tables["contacts"]
    newcomers = pc.greater(contacts.column("client_id"), history.state.num_rows)
    assert _share(joined, newcomers) > 0.3
    young = pc.filter(contacts.column("age"), newcomers)
    assert pc.max(young).as_py() <= 31
    assert none.state.column("propensity").equals(history.state.column("propensity"))


def test_unknown_drift_and_bad_settings_are_rejected(history: Batch) -> None:
    with pytest.raises(DataError, match="unknown drift scenario 'boom'; expected one of: none, rate_cut"):
        simulate_batch(history.state, history.generator, DEC_2010, 30, "boom")
    with pytest.raises(ValidationError, match="must be after start"):
        GeneratorSettings(start=date(2010, 1, 1), end=date(2009, 1, 1))
    with pytest.raises(ValidationError, match="Extra inputs"):
        GeneratorSettings(customers=10)
