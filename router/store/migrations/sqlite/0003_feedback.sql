-- Quality from feedback (issue 16, point 5). Keep equivalent to migrations/postgres/0003_feedback.sql.
-- `requests.task`: the request's task tag (`metadata.task`), so feedback can update the task's
-- estimate. Rows written before this migration keep NULL (no tag).
-- `feedback`: at most one per request (the primary key; a second is refused with 409), deleted
-- with its request. The model, route and task are copied from the request when the feedback is
-- given, so a replica rebuilds its estimates from this table alone (`recent_feedback`).

ALTER TABLE requests ADD COLUMN task TEXT;

CREATE TABLE feedback (
    request_id TEXT    NOT NULL PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    ts_ms      INTEGER NOT NULL,
    key_id     TEXT,
    model      TEXT    NOT NULL,
    route      TEXT    NOT NULL,
    task       TEXT,
    score      REAL    NOT NULL,
    comment    TEXT
);

CREATE INDEX feedback_ts_ms_idx ON feedback (ts_ms);
