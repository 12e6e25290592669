-- Key scopes (issue 15, point 1: the read-only `dashboard` key). Keep equivalent to
-- migrations/postgres/0005_key_scopes.sql.
-- `scopes`: a JSON array of strings. `[]` (every key made before this migration) is an ordinary
-- key; `["dashboard"]` may watch the live feed and read, but not call models.

ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]';
