-- Shadow traffic (issue 16, point 3). Keep equivalent to migrations/postgres/0004_shadow.sql.
-- `shadow_of`: on a shadow request's row, the id of the request it copies (NULL on every other
-- row, including all rows written before this migration). Indexed for `shadows_of`.
-- `response_text`: the shadow's answer text, kept only when the route's shadow sets `log_text`.

ALTER TABLE requests ADD COLUMN shadow_of TEXT;
ALTER TABLE requests ADD COLUMN response_text TEXT;

CREATE INDEX requests_shadow_of_idx ON requests (shadow_of) WHERE shadow_of IS NOT NULL;
