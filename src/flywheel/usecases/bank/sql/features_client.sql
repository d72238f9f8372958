-- A client's contact history at each snapshot date: what the bank knew of the client's earlier calls
-- (strictly before the snapshot), and their outcomes, which are known when a call ends.
-- Reads: contacts, snapshot_dates(feature_timestamp). One row per client with an earlier contact.
SELECT
    c.client_id,
    s.feature_timestamp,
    count(*) AS history_contacts,
    count(DISTINCT date_trunc('month', c.contact_at)) AS history_campaigns,
    CAST(sum(CASE WHEN c.y = 'yes' THEN 1 ELSE 0 END) AS BIGINT) AS history_subscriptions,
    avg(CASE WHEN c.y = 'yes' THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS history_subscription_rate,
    CAST(CAST(s.feature_timestamp AS DATE) - CAST(max(c.contact_at) AS DATE) AS BIGINT) AS days_since_last_contact,
    CAST(max_by(c.y, c.contact_at) = 'yes' AS BIGINT) AS last_contact_subscribed
FROM snapshot_dates s
JOIN contacts c ON c.contact_at < s.feature_timestamp AND c.client_id IS NOT NULL
GROUP BY c.client_id, s.feature_timestamp
