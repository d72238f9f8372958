"""Credit score (the Kaggle "credit score classification" data, seed 003): Poor, Standard or Good?

A prediction is about one monthly record of a customer, made when the record is drawn up, from what
the caller sends (the record's attributes: income, accounts, loans, delays, debt, …), and the
customer's earlier records (a weekly snapshot per customer, ``sql/features_customer.sql``: months on
record, the previous score, mean delay, the change of debt, …). The label is the record's score as an
integer code in ``classes`` order (``sql/labels_credit.sql``). Files in the published layout are read
with their known dirt cleaned or quarantined (:mod:`flywheel.usecases.credit.published`); the
customer's name is never stored and the SSN only as a salted hash.
"""

from __future__ import annotations

from flywheel.usecases.credit.generator import CreditGenerator, GeneratorSettings
from flywheel.usecases.credit.published import PII, read_published
from flywheel.usecases.credit.settings import CreditLabels
from flywheel.usecases.credit.tables import CREDIT_SCORES, TABLE_ORDER, TABLES
from flywheel.usecases.spec import ApiSpec, Entity, Extraction, FeatureView, LabelSpec, UseCase

RECORD = Entity(
    name="record",
    join_key="id",
    description="A customer's monthly record (credit_records.id, e.g. 0x1602).",
    dtype="string",
)
CUSTOMER = Entity(
    name="customer",
    join_key="customer_id",
    description="A customer (credit_records.customer_id, e.g. CUS_0xd40).",
    dtype="string",
)
REQUEST_FEATURES = (
    "age",
    "occupation",
    "annual_income",
    "monthly_inhand_salary",
    "num_bank_accounts",
    "num_credit_card",
    "interest_rate",
    "num_of_loan",
    "delay_from_due_date",
    "num_of_delayed_payment",
    "changed_credit_limit",
    "num_credit_inquiries",
    "credit_mix",
    "outstanding_debt",
    "credit_utilization_ratio",
    "credit_history_months",
    "payment_of_min_amount",
    "total_emi_per_month",
    "amount_invested_monthly",
    "payment_behaviour",
    "monthly_balance",
)

# the attributes seed 003's extraction copies into its target (the request features and the loan types)
EXTRACTED = (*REQUEST_FEATURES, "type_of_loan")

USE_CASE = UseCase(
    name="credit",
    package=__name__,
    task="multiclass",
    classes=CREDIT_SCORES,
    tables=TABLES,
    table_order=TABLE_ORDER,
    entity=RECORD,
    snapshot=FeatureView(
        name="features_customer",
        sql="features_customer.sql",
        entity=CUSTOMER,
        description="Weekly credit-history snapshots per customer built by `flywheel features build`.",
        start_sql="SELECT min(record_date) FROM credit_records",
    ),
    labels=LabelSpec(
        sql="labels_credit.sql",
        observed_sql="SELECT min(record_date), max(record_date) FROM credit_records",
        request_features=REQUEST_FEATURES,
    ),
    api=ApiSpec(
        title="Flywheel credit score",
        description="Credit-score class probabilities (Poor, Standard, Good) for a customer's monthly "
        "record, from the caller's record, the Feast online store (the customer's earlier records) and "
        "the champion.",
        score_field="credit_score_probabilities",
        band_field=None,
        example_id="0x1602",
        example={
            "id": "0x1602",
            "customer_id": "CUS_0xd40",
            "age": 23,
            "occupation": "Scientist",
            "annual_income": 19114.12,
            "monthly_inhand_salary": 1824.84,
            "num_bank_accounts": 3,
            "num_credit_card": 4,
            "interest_rate": 3,
            "num_of_loan": 4,
            "delay_from_due_date": 3,
            "num_of_delayed_payment": 7,
            "changed_credit_limit": 11.27,
            "num_credit_inquiries": 4,
            "credit_mix": "Good",
            "outstanding_debt": 809.98,
            "credit_utilization_ratio": 26.82,
            "credit_history_months": 265,
            "payment_of_min_amount": "No",
            "total_emi_per_month": 49.57,
            "amount_invested_monthly": 80.42,
            "payment_behaviour": "High_spent_Small_value_payments",
            "monthly_balance": 312.49,
        },
    ),
    label_settings=CreditLabels,
    generator_settings=GeneratorSettings,
    generator=CreditGenerator(),
    state_table="customer_state",
    read_file=read_published,
    pii=PII,
    extraction=Extraction(
        target="credit_score_features_target",
        sql="credit_score_features_target.sql",
        sources={
            "credit_score": "SELECT id, customer_id, CAST(record_date AS DATE) AS date, credit_score "
            "FROM credit_records",
            "credit_score_features": f"SELECT id, customer_id, {', '.join(EXTRACTED)} FROM credit_records",
        },
        window_days=7,
    ),
    size_setting="customers",
    defaults={
        "features": {"cadence_days": 7, "anchor": "2024-01-01", "ttl_days": 0},
        "training": {"model_type": "catboost", "baseline": "logistic_regression"},
    },
    # a year of 4,000 customers' records, then a week of statements in a recession; two weeks of traffic
    demo={"data.generator.customers": 4000, "data.simulate.days": 7, "data.simulate.drift": "recession"},
    demo_traffic=(14, 60),
)
