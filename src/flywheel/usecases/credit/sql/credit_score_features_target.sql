-- Seed 003's extraction: the credit scores of the months up to the logical date {{ ds }} (one in the
-- seed; data.extract.lookback_months), joined with their features, kept in a table holding the last
-- 7 logical dates (base_dt).
-- Runs unchanged on DuckDB (over the lake) and on MySQL/MariaDB: statements separated by ';', dates
-- as DATE literals with INTERVAL arithmetic. CREATE statements run first, on their own (MySQL commits
-- DDL implicitly); the DELETE and the INSERT run in one transaction.
-- Where this differs from the seed: the DELETE also removes ds's own rows, so a re-run of a date
-- replaces them instead of adding duplicates; and the span is half-open, (ds - N months, ds], so
-- consecutive months do not share a day (the seed's BETWEEN counts both ends).

CREATE TABLE IF NOT EXISTS credit_score_features_target (
    base_dt DATE NOT NULL,
    id VARCHAR(64) NOT NULL,
    customer_id VARCHAR(64) NOT NULL,
    date DATE NOT NULL,
    age BIGINT,
    occupation VARCHAR(64),
    annual_income DOUBLE,
    monthly_inhand_salary DOUBLE,
    num_bank_accounts BIGINT,
    num_credit_card BIGINT,
    interest_rate BIGINT,
    num_of_loan BIGINT,
    type_of_loan TEXT,
    delay_from_due_date BIGINT,
    num_of_delayed_payment BIGINT,
    changed_credit_limit DOUBLE,
    num_credit_inquiries BIGINT,
    credit_mix VARCHAR(32),
    outstanding_debt DOUBLE,
    credit_utilization_ratio DOUBLE,
    credit_history_months BIGINT,
    payment_of_min_amount VARCHAR(32),
    total_emi_per_month DOUBLE,
    amount_invested_monthly DOUBLE,
    payment_behaviour VARCHAR(64),
    monthly_balance DOUBLE,
    credit_score VARCHAR(32) NOT NULL,
    PRIMARY KEY (base_dt, id)
);

-- 1. Leave the window: dates a week old or older, and ds itself (a re-run replaces it).
DELETE FROM credit_score_features_target
WHERE base_dt <= DATE '{{ ds }}' - INTERVAL 7 DAY
    OR base_dt = DATE '{{ ds }}';

-- 2. The month up to ds: each credit score with its record's features.
INSERT INTO credit_score_features_target (
    base_dt,
    id,
    customer_id,
    date,
    age,
    occupation,
    annual_income,
    monthly_inhand_salary,
    num_bank_accounts,
    num_credit_card,
    interest_rate,
    num_of_loan,
    type_of_loan,
    delay_from_due_date,
    num_of_delayed_payment,
    changed_credit_limit,
    num_credit_inquiries,
    credit_mix,
    outstanding_debt,
    credit_utilization_ratio,
    credit_history_months,
    payment_of_min_amount,
    total_emi_per_month,
    amount_invested_monthly,
    payment_behaviour,
    monthly_balance,
    credit_score
)
SELECT DATE '{{ ds }}' AS base_dt,
    b.id,
    b.customer_id,
    b.date,
    a.age,
    a.occupation,
    a.annual_income,
    a.monthly_inhand_salary,
    a.num_bank_accounts,
    a.num_credit_card,
    a.interest_rate,
    a.num_of_loan,
    a.type_of_loan,
    a.delay_from_due_date,
    a.num_of_delayed_payment,
    a.changed_credit_limit,
    a.num_credit_inquiries,
    a.credit_mix,
    a.outstanding_debt,
    a.credit_utilization_ratio,
    a.credit_history_months,
    a.payment_of_min_amount,
    a.total_emi_per_month,
    a.amount_invested_monthly,
    a.payment_behaviour,
    a.monthly_balance,
    b.credit_score
FROM credit_score_features a
    INNER JOIN credit_score b
        ON a.id = b.id
        AND a.customer_id = b.customer_id
WHERE b.date > DATE '{{ ds }}' - INTERVAL {{ lookback_months }} MONTH
    AND b.date <= DATE '{{ ds }}';
