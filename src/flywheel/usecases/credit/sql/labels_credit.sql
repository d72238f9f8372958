-- One label row per monthly record: the record's credit score as a code (0 = Poor, 1 = Standard,
-- 2 = Good), known with the record. The row also carries the record's attributes, which a caller
-- sends at prediction time: the request features. Never the SSN's hash, nor the free-text loan types.
SELECT
    id,
    customer_id,
    record_date AS label_timestamp,
    CAST(CASE credit_score WHEN 'Poor' THEN 0 WHEN 'Standard' THEN 1 WHEN 'Good' THEN 2 END AS BIGINT)
        AS {label_column},
    age,
    occupation,
    annual_income,
    monthly_inhand_salary,
    num_bank_accounts,
    num_credit_card,
    interest_rate,
    num_of_loan,
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
    monthly_balance
FROM credit_records
