-- Sensor summaries of each machine over the week before each snapshot date, and its failures so far.
SELECT
    m.machine_id,
    s.feature_timestamp,
    m.model,
    avg(r.temperature) AS temperature_7d,
    max(r.temperature) AS temperature_max_7d,
    avg(r.vibration) AS vibration_7d,
    CAST((SELECT count(*) FROM failures f WHERE f.machine_id = m.machine_id AND f.failed_at < s.feature_timestamp) AS BIGINT)
        AS failures_before
FROM snapshot_dates s
JOIN machines m ON m.installed_at < s.feature_timestamp
JOIN readings r ON r.machine_id = m.machine_id
    AND r.read_at < s.feature_timestamp AND r.read_at >= s.feature_timestamp - INTERVAL 7 DAY
GROUP BY m.machine_id, s.feature_timestamp, m.model
