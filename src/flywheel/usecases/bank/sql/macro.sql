-- The socio-economic indicators as published: a contact sees the latest row published at or before it.
-- Reads: macro. Entity-less: every row applies to every contact.
SELECT
    published_at AS feature_timestamp,
    emp_var_rate,
    cons_price_idx,
    cons_conf_idx,
    euribor3m,
    nr_employed
FROM macro
