-- features_customer: one row per (customer_id, feature_timestamp) for every snapshot time t in
-- the table snapshot_dates(feature_timestamp).
--
-- Point-in-time rules (tested in tests/data/test_feature_windows.py):
--   * A window "Nd" at time t covers events with  t - N days < created_at <= t.
--   * Only events created at or before t are read; a return counts only once returned_at <= t.
--   * Cancelled orders are not purchases: they count only in cancel_rate_90d. Cancellation is taken
--     to be known at the order's created_at (theLook has no cancellation timestamp).
--   * Population at t: customers with at least one non-cancelled order in (t - 365 days, t].
--   * Revenue of an order is the sum of its items' sale_price (gross of later returns), summed as
--     DECIMAL so that results do not depend on the order of a parallel sum.
--   * Rates and ratios are NULL where their denominator is zero.
--
-- Inputs are views over the lake: users, orders, order_items, products. Dialect: the one DuckDB and
-- Spark SQL both run with the same results (flywheel.data.engine; linted by
-- tests/unit/test_sql_dialect.py): elapsed time as unix_seconds differences, DOUBLE arithmetic
-- from CASTs, never decimal literals.
--
-- Sections: each "-- @prep NAME" SELECT is computed once per build as the table NAME (what every
-- snapshot date reads); the "-- @chunk" SELECT then runs once per chunk of snapshot dates. The
-- windows are counted without a range join per window or a COUNT(DISTINCT): the dates' bounds are
-- computed once per date, and a product (category) is in a customer's 90-day window at t when its
-- latest purchase at or before t (created_at <= t < the next purchase of it) is after t - 90 days.
-- @prep order_revenue
SELECT
    o.order_id,
    o.user_id AS customer_id,
    o.created_at,
    o.returned_at,
    CASE WHEN o.status = 'Cancelled' THEN 1 ELSE 0 END AS is_cancelled,
    SUM(CAST(i.sale_price AS DECIMAL(18, 2))) AS revenue
FROM orders AS o
JOIN order_items AS i ON i.order_id = o.order_id
GROUP BY o.order_id, o.user_id, o.created_at, o.returned_at, o.status
-- @prep first_orders
SELECT user_id AS customer_id, MIN(created_at) AS first_order_at
FROM orders
WHERE status <> 'Cancelled'
GROUP BY user_id
-- @prep item_segments
-- one row per non-cancelled purchase of a product (kind 0) and of a category (kind 1) by a customer, with the
-- customer's next purchase of the same product / category: at time t the product counts in the 90-day window
-- iff its latest purchase at or before t (created_at <= t < next_at) is after t - 90 days.
SELECT customer_id, 0 AS kind, created_at,
    LEAD(created_at) OVER (PARTITION BY customer_id, product_id ORDER BY created_at) AS next_at
FROM (
    SELECT i.user_id AS customer_id, i.product_id, i.created_at
    FROM order_items AS i
    JOIN products AS p ON p.id = i.product_id
    WHERE i.status <> 'Cancelled' AND i.created_at IS NOT NULL
)
UNION ALL
SELECT customer_id, 1 AS kind, created_at,
    LEAD(created_at) OVER (PARTITION BY customer_id, category ORDER BY created_at) AS next_at
FROM (
    SELECT i.user_id AS customer_id, p.category, i.created_at
    FROM order_items AS i
    JOIN products AS p ON p.id = i.product_id
    WHERE i.status <> 'Cancelled' AND i.created_at IS NOT NULL
)
-- @chunk
WITH dates AS (
    SELECT
        feature_timestamp,
        feature_timestamp - INTERVAL 30 DAY AS t_30d,
        feature_timestamp - INTERVAL 90 DAY AS t_90d,
        feature_timestamp - INTERVAL 365 DAY AS t_365d
    FROM snapshot_dates
),
order_windows AS (
    SELECT
        s.feature_timestamp,
        r.*,
        CASE WHEN r.created_at > s.t_30d THEN 1 ELSE 0 END AS in_30d,
        CASE WHEN r.created_at > s.t_90d THEN 1 ELSE 0 END AS in_90d,
        CASE WHEN r.returned_at <= s.feature_timestamp THEN 1 ELSE 0 END AS returned_by_t
    FROM dates AS s
    JOIN order_revenue AS r
        ON r.created_at <= s.feature_timestamp
        AND r.created_at > s.t_365d
),
order_features AS (
    SELECT
        customer_id,
        feature_timestamp,
        SUM(CASE WHEN is_cancelled = 0 AND in_30d = 1 THEN 1 ELSE 0 END) AS orders_30d,
        SUM(CASE WHEN is_cancelled = 0 AND in_90d = 1 THEN 1 ELSE 0 END) AS orders_90d,
        SUM(CASE WHEN is_cancelled = 0 THEN 1 ELSE 0 END) AS orders_365d,
        SUM(CASE WHEN is_cancelled = 0 AND in_30d = 1 THEN revenue ELSE 0 END) AS revenue_30d,
        SUM(CASE WHEN is_cancelled = 0 AND in_90d = 1 THEN revenue ELSE 0 END) AS revenue_90d,
        SUM(CASE WHEN is_cancelled = 0 THEN revenue ELSE 0 END) AS revenue_365d,
        SUM(CASE WHEN is_cancelled = 0 AND in_90d = 1 THEN returned_by_t ELSE 0 END) AS returned_90d,
        SUM(CASE WHEN in_90d = 1 THEN is_cancelled ELSE 0 END) AS cancelled_90d,
        SUM(in_90d) AS all_orders_90d,
        MAX(CASE WHEN is_cancelled = 0 THEN created_at END) AS last_order_at,
        MIN(CASE WHEN is_cancelled = 0 THEN created_at END) AS first_order_365d_at
    FROM order_windows
    GROUP BY customer_id, feature_timestamp
    HAVING SUM(CASE WHEN is_cancelled = 0 THEN 1 ELSE 0 END) > 0
),
item_features AS (
    SELECT
        s.feature_timestamp,
        g.customer_id,
        SUM(1 - g.kind) AS distinct_products_90d,
        SUM(g.kind) AS distinct_categories_90d
    FROM dates AS s
    JOIN item_segments AS g
        ON g.created_at <= s.feature_timestamp
        AND g.created_at > s.t_90d
    WHERE g.next_at IS NULL OR g.next_at > s.feature_timestamp
    GROUP BY s.feature_timestamp, g.customer_id
)
SELECT
    f.customer_id,
    f.feature_timestamp,
    CAST(f.orders_30d AS BIGINT) AS orders_30d,
    CAST(f.orders_90d AS BIGINT) AS orders_90d,
    CAST(f.orders_365d AS BIGINT) AS orders_365d,
    CAST(f.revenue_30d AS DOUBLE) AS revenue_30d,
    CAST(f.revenue_90d AS DOUBLE) AS revenue_90d,
    CAST(f.revenue_365d AS DOUBLE) AS revenue_365d,
    CAST(CASE WHEN f.orders_90d > 0 THEN CAST(f.revenue_90d AS DOUBLE) / f.orders_90d END AS DOUBLE) AS avg_order_value_90d,
    CAST(COALESCE(it.distinct_products_90d, 0) AS BIGINT) AS distinct_products_90d,
    CAST(COALESCE(it.distinct_categories_90d, 0) AS BIGINT) AS distinct_categories_90d,
    CAST(unix_seconds(f.feature_timestamp) - unix_seconds(f.last_order_at) AS DOUBLE) / 86400 AS days_since_last_order,
    CAST(unix_seconds(f.feature_timestamp) - unix_seconds(fo.first_order_at) AS DOUBLE) / 86400 AS days_since_first_order,
    CAST(unix_seconds(f.feature_timestamp) - unix_seconds(u.created_at) AS DOUBLE) / 86400 AS tenure_days,
    CAST(CASE WHEN f.orders_90d > 0 THEN CAST(f.returned_90d AS DOUBLE) / f.orders_90d END AS DOUBLE) AS return_rate_90d,
    CAST(CASE WHEN f.all_orders_90d > 0 THEN CAST(f.cancelled_90d AS DOUBLE) / f.all_orders_90d END AS DOUBLE)
        AS cancel_rate_90d,
    CAST(CASE WHEN f.revenue_90d > 0 THEN CAST(f.revenue_30d AS DOUBLE) * 3 / CAST(f.revenue_90d AS DOUBLE) END AS DOUBLE) AS revenue_trend_30_90,
    CAST(CASE WHEN f.orders_365d > 1
        THEN CAST(unix_seconds(f.last_order_at) - unix_seconds(f.first_order_365d_at) AS DOUBLE) / 86400 / (f.orders_365d - 1)
    END AS DOUBLE) AS mean_days_between_orders_365d,
    CAST(u.age AS BIGINT) AS age,
    u.gender,
    u.traffic_source,
    u.country
FROM order_features AS f
JOIN users AS u ON u.id = f.customer_id
JOIN first_orders AS fo ON fo.customer_id = f.customer_id
LEFT JOIN item_features AS it
    ON it.customer_id = f.customer_id AND it.feature_timestamp = f.feature_timestamp
