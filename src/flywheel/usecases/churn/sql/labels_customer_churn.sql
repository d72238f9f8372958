-- labels_customer_churn: one row per (customer_id, label_timestamp) for every label time t in the
-- table label_dates(label_timestamp).
--
-- Rules (tested in tests/data/test_labels.py):
--   * Population at t: customers with at least one non-cancelled order in (t - {active_days} days, t]
--     (so at least one order at or before t).
--   * {label_column} = 1 when the customer places no non-cancelled order in (t, t + {horizon_days} days].
--   * The caller chooses label dates with t + horizon <= the last order in the lake, so every label's
--     horizon is fully observed; nothing here reads the wall clock.
--
-- How, in one range join and no DISTINCT: each purchase is the customer's latest one for t in
-- [created_at, next purchase) and keeps the customer active while t < created_at + {active_days}
-- days; so the one purchase with created_at <= t < active_until puts the customer in the population,
-- and its next_at says whether they return within the horizon. Purchases at the same moment give all
-- but one an empty interval.
WITH purchases AS (
    SELECT
        user_id AS customer_id,
        created_at,
        LEAD(created_at) OVER (PARTITION BY user_id ORDER BY created_at) AS next_at
    FROM orders
    WHERE status <> 'Cancelled' AND created_at IS NOT NULL
),
intervals AS (
    SELECT
        customer_id,
        created_at,
        next_at,
        CASE
            WHEN next_at IS NOT NULL AND next_at < created_at + INTERVAL {active_days} DAY THEN next_at
            ELSE created_at + INTERVAL {active_days} DAY
        END AS active_until
    FROM purchases
)
SELECT
    p.customer_id,
    d.label_timestamp,
    CAST(CASE WHEN p.next_at IS NOT NULL AND p.next_at <= d.label_timestamp + INTERVAL {horizon_days} DAY
        THEN 0 ELSE 1 END AS BIGINT) AS {label_column}
FROM label_dates AS d
JOIN intervals AS p
    ON p.created_at <= d.label_timestamp
    AND p.active_until > d.label_timestamp
