-- One label row per contact: did the client subscribe a term deposit (y)? The outcome is recorded when
-- the call ends, so a contact's label is observable once the lake holds it. The row also carries what
-- a caller knows at call time (client and contact attributes, contact history as published): the
-- request features. `duration` is known only after the call and is never selected.
SELECT
    contact_id,
    client_id,
    contact_at AS label_timestamp,
    CAST(y = 'yes' AS BIGINT) AS {label_column},
    age,
    job,
    marital,
    education,
    "default",
    balance,
    housing,
    loan,
    contact,
    month,
    day,
    day_of_week,
    campaign,
    pdays,
    previous,
    poutcome
FROM contacts
