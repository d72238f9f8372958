-- Sensor summaries of each machine over the week before each snapshot date, and its failures so far.
-- Written in the SQL DuckDB and Spark share (Spark takes no correlated subquery beside an aggregate).
WITH failures_before AS (
    SELECT s.feature_timestamp, f.machine_id, count(*) AS failures
    FROM snapshot_dates s
    JOIN failures f ON f.failed_at < s.feature_timestamp
    GROUP BY s.feature_timestamp, f.machine_id
)
SELECT
    m.machine_id,
    s.feature_timestamp,
    m.model,
    avg(r.temperature) AS temperature_7d,
    max(r.temperature) AS temperature_max_7d,
    avg(r.vibration) AS vibration_7d,
    CAST(COALESCE(max(b.failures), 0) AS BIGINT) AS failures_before
FROM snapshot_dates s
JOIN machines m ON m.installed_at < s.feature_timestamp
JOIN readings r ON r.machine_id = m.machine_id
    AND r.read_at < s.feature_timestamp AND r.read_at >= s.feature_timestamp - INTERVAL 7 DAY
LEFT JOIN failures_before b ON b.machine_id = m.machine_id AND b.feature_timestamp = s.feature_timestamp
GROUP BY m.machine_id, s.feature_timestamp, m.model
