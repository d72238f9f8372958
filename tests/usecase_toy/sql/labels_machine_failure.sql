-- A machine installed before t fails when a failure is recorded in (t, t + horizon].
SELECT
    m.machine_id,
    d.label_timestamp,
    CAST(EXISTS (
        SELECT 1 FROM failures f
        WHERE f.machine_id = m.machine_id
          AND f.failed_at > d.label_timestamp
          AND f.failed_at <= d.label_timestamp + INTERVAL {horizon_days} DAY
    ) AS BIGINT) AS {label_column}
FROM label_dates d
JOIN machines m ON m.installed_at < d.label_timestamp
