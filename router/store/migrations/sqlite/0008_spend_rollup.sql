-- The spend report's hourly rollup (issue 15, point 4). Keep equivalent to
-- migrations/postgres/0008_spend_rollup.sql; `rollup.rs` maintains it and holds the same backfill.
-- Per UTC hour, the sums of the billed rows with `ts_ms >= 0`, one row per grouping (`dim`) and
-- value: `spend_rollup` over all keys (what a report without `key` reads), `spend_rollup_keys`
-- per key as well (a report for one key). `dim` is `key` (first table only), `model`, `route`,
-- `provider`, `total` (every row of the hour: a tag report's untagged group is the total less
-- the tagged rows) or `t.NAME` for a tag whose name a gateway can configure (a lower-case
-- letter, then lower-case letters, digits, _ or -) and whose value is a string (the only kind
-- the store writes). A value (and a key) is '' for NULL and '.' before anything else, so it
-- can sit in a primary key and '' stays apart from NULL; `total`'s value is ''.
-- The request log's writer adds each batch's inserted rows in the batch's transaction, and a
-- purge takes its deleted rows away in its own: a rollup row is always the sum of its rows.
-- A report reads whole hours here and the edges of its range from `requests`.
-- The backfill reads `requests` once (`j`: per hour, key, model, route and provider; `t`: per
-- hour, key and tag) and spreads that over the groupings.

CREATE TABLE spend_rollup (
    dim               TEXT    NOT NULL,
    hour_ms           INTEGER NOT NULL,
    value             TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_picousd      INTEGER NOT NULL,
    PRIMARY KEY (dim, hour_ms, value)
) WITHOUT ROWID;

CREATE TABLE spend_rollup_keys (
    dim               TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    hour_ms           INTEGER NOT NULL,
    value             TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_picousd      INTEGER NOT NULL,
    PRIMARY KEY (dim, key_id, hour_ms, value)
) WITHOUT ROWID;

WITH j AS MATERIALIZED (SELECT (ts_ms / 3600000) * 3600000 AS h, CASE WHEN key_id IS NULL THEN '' ELSE '.' || key_id END AS k, CASE WHEN model IS NULL THEN '' ELSE '.' || model END AS m, '.' || route AS r, CASE WHEN provider IS NULL THEN '' ELSE '.' || provider END AS p, COUNT(*) AS n, SUM(prompt_tokens) AS pt, SUM(completion_tokens) AS ct, SUM(cost_picousd) AS c
    FROM requests
    WHERE billed AND ts_ms >= 0
    GROUP BY 1, 2, 3, 4, 5),
t AS MATERIALIZED (SELECT (r.ts_ms / 3600000) * 3600000 AS h, CASE WHEN r.key_id IS NULL THEN '' ELSE '.' || r.key_id END AS k, 't.' || e.key AS d, '.' || e.value AS v, COUNT(*) AS n, SUM(r.prompt_tokens) AS pt, SUM(r.completion_tokens) AS ct, SUM(r.cost_picousd) AS c
    FROM requests AS r, json_each(r.tags) AS e
    WHERE r.tags IS NOT NULL AND json_type(r.tags) = 'object' AND r.billed AND r.ts_ms >= 0 AND e.type = 'text' AND e.key GLOB '[a-z]*' AND NOT e.key GLOB '*[^a-z0-9_-]*'
    GROUP BY 1, 2, 3, 4),
u AS (SELECT 'total' AS d, k, h, '' AS v, n, pt, ct, c FROM j
    UNION ALL SELECT 'model', k, h, m, n, pt, ct, c FROM j
    UNION ALL SELECT 'route', k, h, r, n, pt, ct, c FROM j
    UNION ALL SELECT 'provider', k, h, p, n, pt, ct, c FROM j
    UNION ALL SELECT d, k, h, v, n, pt, ct, c FROM t)
INSERT INTO spend_rollup (dim, hour_ms, value, requests, prompt_tokens, completion_tokens, cost_picousd)
SELECT d, h, v, SUM(n), SUM(pt), SUM(ct), SUM(c) FROM (SELECT d, k, h, v, n, pt, ct, c FROM u
    UNION ALL SELECT 'key', k, h, k, n, pt, ct, c FROM j) AS a
    GROUP BY d, h, v;

WITH j AS MATERIALIZED (SELECT (ts_ms / 3600000) * 3600000 AS h, CASE WHEN key_id IS NULL THEN '' ELSE '.' || key_id END AS k, CASE WHEN model IS NULL THEN '' ELSE '.' || model END AS m, '.' || route AS r, CASE WHEN provider IS NULL THEN '' ELSE '.' || provider END AS p, COUNT(*) AS n, SUM(prompt_tokens) AS pt, SUM(completion_tokens) AS ct, SUM(cost_picousd) AS c
    FROM requests
    WHERE billed AND ts_ms >= 0
    GROUP BY 1, 2, 3, 4, 5),
t AS MATERIALIZED (SELECT (r.ts_ms / 3600000) * 3600000 AS h, CASE WHEN r.key_id IS NULL THEN '' ELSE '.' || r.key_id END AS k, 't.' || e.key AS d, '.' || e.value AS v, COUNT(*) AS n, SUM(r.prompt_tokens) AS pt, SUM(r.completion_tokens) AS ct, SUM(r.cost_picousd) AS c
    FROM requests AS r, json_each(r.tags) AS e
    WHERE r.tags IS NOT NULL AND json_type(r.tags) = 'object' AND r.billed AND r.ts_ms >= 0 AND e.type = 'text' AND e.key GLOB '[a-z]*' AND NOT e.key GLOB '*[^a-z0-9_-]*'
    GROUP BY 1, 2, 3, 4),
u AS (SELECT 'total' AS d, k, h, '' AS v, n, pt, ct, c FROM j
    UNION ALL SELECT 'model', k, h, m, n, pt, ct, c FROM j
    UNION ALL SELECT 'route', k, h, r, n, pt, ct, c FROM j
    UNION ALL SELECT 'provider', k, h, p, n, pt, ct, c FROM j
    UNION ALL SELECT d, k, h, v, n, pt, ct, c FROM t)
INSERT INTO spend_rollup_keys (dim, key_id, hour_ms, value, requests, prompt_tokens, completion_tokens, cost_picousd)
SELECT d, k, h, v, SUM(n), SUM(pt), SUM(ct), SUM(c) FROM u
    GROUP BY d, k, h, v;
