-- labels_customer_churn: one row per (customer_id, label_timestamp) for every label time t in the
-- table label_dates(label_timestamp).
--
-- Rules (tested in tests/data/test_labels.py):
--   * Population at t: customers with at least one non-cancelled order in (t - {active_days} days, t]
--     (so at least one order at or before t).
--   * {label_column} = 1 when the customer places no non-cancelled order in (t, t + {horizon_days} days].
--   * The caller chooses label dates with t + horizon <= the last order in the lake, so every label's
--     horizon is fully observed; nothing here reads the wall clock.
WITH purchases AS (
    SELECT user_id AS customer_id, created_at
    FROM orders
    WHERE status <> 'Cancelled'
),
population AS (
    SELECT DISTINCT d.label_timestamp, p.customer_id
    FROM label_dates AS d
    JOIN purchases AS p
        ON p.created_at <= d.label_timestamp
        AND p.created_at > d.label_timestamp - INTERVAL {active_days} DAY
),
returned AS (
    SELECT DISTINCT d.label_timestamp, p.customer_id
    FROM label_dates AS d
    JOIN purchases AS p
        ON p.created_at > d.label_timestamp
        AND p.created_at <= d.label_timestamp + INTERVAL {horizon_days} DAY
)
SELECT
    pop.customer_id,
    pop.label_timestamp,
    CAST(CASE WHEN r.customer_id IS NULL THEN 1 ELSE 0 END AS BIGINT) AS {label_column}
FROM population AS pop
LEFT JOIN returned AS r
    ON r.customer_id = pop.customer_id AND r.label_timestamp = pop.label_timestamp
