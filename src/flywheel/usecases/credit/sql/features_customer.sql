-- A customer's credit history at each snapshot date: what the lender knew from the customer's earlier
-- monthly records (strictly before the snapshot), whose scores are known with each record.
-- Reads: credit_records, snapshot_dates(feature_timestamp). One row per customer with an earlier record.
-- Score codes: 0 = Poor, 1 = Standard, 2 = Good.
WITH history AS (
    SELECT
        s.feature_timestamp,
        r.customer_id,
        r.record_date,
        r.delay_from_due_date,
        r.outstanding_debt,
        r.credit_utilization_ratio,
        r.num_credit_inquiries,
        CASE r.credit_score WHEN 'Poor' THEN 0 WHEN 'Standard' THEN 1 WHEN 'Good' THEN 2 END AS score,
        row_number() OVER (
            PARTITION BY r.customer_id, s.feature_timestamp ORDER BY r.record_date DESC, r.id DESC
        ) AS recency
    FROM snapshot_dates s
    JOIN credit_records r ON r.record_date < s.feature_timestamp
)
SELECT
    customer_id,
    feature_timestamp,
    count(*) AS history_records,
    CAST(max(CASE WHEN recency = 1 THEN score END) AS BIGINT) AS last_credit_score_code,
    avg(CASE WHEN recency <= 3 THEN score END) AS recent_credit_score_mean,
    avg(CASE WHEN score = 0 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS history_poor_share,
    avg(CASE WHEN score = 2 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS history_good_share,
    avg(delay_from_due_date) AS history_mean_delay,
    CAST(max(delay_from_due_date) AS BIGINT) AS history_max_delay,
    max(CASE WHEN recency = 1 THEN outstanding_debt END)
        - max(CASE WHEN recency = 2 THEN outstanding_debt END) AS debt_change,
    avg(credit_utilization_ratio) AS history_mean_utilization,
    CAST(max(CASE WHEN recency = 1 THEN num_credit_inquiries END)
        - min(num_credit_inquiries) AS BIGINT) AS inquiries_added,
    CAST(CAST(feature_timestamp AS DATE) - CAST(max(record_date) AS DATE) AS BIGINT) AS days_since_last_record
FROM history
GROUP BY customer_id, feature_timestamp
