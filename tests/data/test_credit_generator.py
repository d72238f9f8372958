"""The credit generator: deterministic, valid against its table spec, plausible class shares and
month-to-month persistence, a score nonlinear in the record (thresholds and interactions), and drift
scenarios that shift what they say they shift."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from flywheel.data.validation import check_values, conform
from flywheel.usecases.credit.generator import (
    GENERATOR_VERSION,
    GeneratorSettings,
    generate_batch,
    generation_id,
    simulate_batch,
)
from flywheel.usecases.credit.tables import CREDIT_RECORDS

SETTINGS = GeneratorSettings(customers=1500, start=date(2024, 1, 1), end=date(2024, 9, 1), seed=5)


@pytest.fixture(scope="module")
def first():
    return generate_batch(SETTINGS)


def _records(batch) -> pd.DataFrame:
    return batch.tables["credit_records"].to_pandas()


def _simulated(first, drift: str, days: int = 61):
    return simulate_batch(first.state, first.generator, first.period_end, days, drift, f"sim-{drift}")


def test_equal_settings_give_equal_data_and_another_seed_other_data(first) -> None:
    again = generate_batch(SETTINGS)
    assert again.tables["credit_records"].equals(first.tables["credit_records"])
    assert again.state.equals(first.state)
    other = generate_batch(SETTINGS.model_copy(update={"seed": 6}))
    assert not other.tables["credit_records"].equals(first.tables["credit_records"])
    # the id names the generator's version, so a generator making other data makes another batch
    assert first.batch_id == generation_id(SETTINGS) and first.batch_id.endswith(f"-v{GENERATOR_VERSION}")


def test_records_conform_to_the_table_spec(first) -> None:
    table = first.tables["credit_records"]
    assert table.schema.equals(CREDIT_RECORDS.arrow_schema)
    conformed, failures = conform(CREDIT_RECORDS, table)
    assert not failures
    assert not check_values(CREDIT_RECORDS, conformed)


def test_one_statement_per_customer_and_month_spread_over_the_month(first) -> None:
    rows = _records(first)
    assert len(rows) == SETTINGS.customers * 8
    assert rows["id"].is_unique
    per_month = rows.groupby([rows["customer_id"], rows["record_date"].dt.month]).size()
    assert (per_month == 1).all()
    assert rows["record_date"].dt.day.nunique() >= 25  # billing days 1–28


def test_class_shares_are_close_to_the_published_ones(first) -> None:
    shares = _records(first)["credit_score"].value_counts(normalize=True)
    assert 0.49 < shares["Standard"] < 0.57
    assert 0.25 < shares["Poor"] < 0.33
    assert 0.14 < shares["Good"] < 0.22


def test_scores_persist_month_to_month_and_follow_the_attributes(first) -> None:
    rows = _records(first).sort_values(["customer_id", "record_date"])
    code = rows["credit_score"].map({"Poor": 0, "Standard": 1, "Good": 2})
    previous = code.groupby(rows["customer_id"]).shift()
    same = (code == previous)[previous.notna()].mean()
    assert same > 0.6  # a latent quality that moves slowly
    by_score = rows.groupby("credit_score")[["delay_from_due_date", "num_of_delayed_payment"]].mean()
    assert by_score.loc["Poor", "delay_from_due_date"] > by_score.loc["Good", "delay_from_due_date"]
    assert by_score.loc["Poor", "num_of_delayed_payment"] > by_score.loc["Good", "num_of_delayed_payment"]


def test_the_score_is_nonlinear_in_the_record(first) -> None:
    rows = _records(first)
    poor = rows["credit_score"] == "Poor"
    utilization = rows["credit_utilization_ratio"]
    # utilization counts only above 35 %: the Poor share rises far more past it than below it
    band = poor.groupby(np.floor(utilization / 5) * 5).mean()
    assert band[35] - band[30] > 3 * (band[30] - band[25])
    # paying only the minimum counts most with a high utilization
    high = utilization > 35
    minimum, more = rows["payment_of_min_amount"] == "Yes", rows["payment_of_min_amount"] == "No"
    with_high = poor[minimum & high].mean() - poor[more & high].mean()
    assert with_high > 2 * (poor[minimum & ~high].mean() - poor[more & ~high].mean())
    # many loans count most on a short credit history
    many, short = rows["num_of_loan"] >= 5, rows["credit_history_months"] < 120
    with_short = poor[many & short].mean() - poor[~many & short].mean()
    assert with_short > 1.5 * (poor[many & ~short].mean() - poor[~many & ~short].mean())
    # a payment more than 60 days late (two missed cycles) is almost always Poor
    assert poor[rows["delay_from_due_date"] > 60].mean() > 0.9


def test_a_simulated_period_continues_ids_customers_and_dates(first) -> None:
    batch = _simulated(first, "none", days=14)
    rows, before = _records(batch), _records(first)
    assert not set(rows["id"]) & set(before["id"])
    assert set(rows["customer_id"]) <= set(before["customer_id"])
    assert rows["record_date"].min() >= pd.Timestamp(first.period_end)
    assert rows["record_date"].max() < pd.Timestamp(batch.period_end)
    assert 0.3 * SETTINGS.customers < len(rows) < 0.7 * SETTINGS.customers  # 14 of ~30 billing days


def test_a_recession_lowers_incomes_and_raises_delays_and_the_poor_share(first) -> None:
    calm, recession = _records(_simulated(first, "none")), _records(_simulated(first, "recession"))
    assert recession["annual_income"].mean() < 0.9 * calm["annual_income"].mean()
    assert recession["delay_from_due_date"].mean() > calm["delay_from_due_date"].mean() + 3
    assert recession["credit_utilization_ratio"].mean() > calm["credit_utilization_ratio"].mean() + 2
    poor = (recession["credit_score"] == "Poor").mean()
    assert poor > (calm["credit_score"] == "Poor").mean() + 0.04


def test_a_new_segment_brings_young_thin_file_customers(first) -> None:
    batch = _simulated(first, "new_segment")
    rows, known = _records(batch), set(_records(first)["customer_id"])
    joined = rows[~rows["customer_id"].isin(known)]
    assert joined["customer_id"].nunique() == SETTINGS.customers // 2
    assert joined["age"].between(18, 27).all()
    assert joined["credit_history_months"].max() <= 27
    assert (
        joined["credit_history_months"].mean()
        < 0.2 * rows[rows["customer_id"].isin(known)]["credit_history_months"].mean()
    )
    assert np.isin(batch.state.column("segment").to_numpy(), [0, 1]).all()
