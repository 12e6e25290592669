-- Spend reports and request tags (issue 15, point 4). Keep equivalent to
-- migrations/postgres/0006_report.sql.
-- `tags`: the request's metadata tags that `[log] tags` allows, as a JSON object of strings;
-- NULL when it has none (the default config stores none).
-- `billed`: false only on a shadow's row whose route does not bill it (`shadow.bill = false`):
-- its cost went to no key's spend, and the spend report leaves it out as the ledger did. Rows
-- written before this migration did not record it: shadow rows are taken as unbilled (the
-- default of `bill`), every other row as billed.
-- `requests_report_idx`: the spend report's range scan (`ts_ms` first) covers every column it
-- reads, so a report never touches the table. Its first column serves every query the old
-- `requests_ts_ms_idx` did (purge, model history), which is dropped.

ALTER TABLE requests ADD COLUMN tags TEXT;
ALTER TABLE requests ADD COLUMN billed BOOLEAN NOT NULL DEFAULT TRUE;

UPDATE requests SET billed = FALSE WHERE shadow_of IS NOT NULL;

CREATE INDEX requests_report_idx ON requests (
    ts_ms, billed, key_id, model, route, provider,
    prompt_tokens, completion_tokens, cost_picousd, tags
);

DROP INDEX requests_ts_ms_idx;
