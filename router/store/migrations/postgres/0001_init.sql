-- Switchyard store, initial schema (Postgres). Keep equivalent to migrations/sqlite/0001_init.sql.
-- Money is stored as integer picodollars (1e-12 USD); times as unix epoch milliseconds.
-- Tables are created unqualified, i.e. in the first schema of the connection's search_path.

CREATE TABLE requests (
    id                TEXT             NOT NULL PRIMARY KEY,
    ts_ms             BIGINT           NOT NULL,
    key_id            TEXT,
    endpoint          TEXT             NOT NULL,
    route             TEXT             NOT NULL,
    model             TEXT,
    provider          TEXT,
    status            BIGINT           NOT NULL,
    error_code        TEXT,
    stream            BOOLEAN          NOT NULL,
    cache             TEXT             NOT NULL,
    prompt_tokens     BIGINT           NOT NULL,
    completion_tokens BIGINT           NOT NULL,
    cached_tokens     BIGINT           NOT NULL,
    reasoning_tokens  BIGINT           NOT NULL,
    usage_estimated   BOOLEAN          NOT NULL,
    cost_picousd      BIGINT           NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    ttft_ms           DOUBLE PRECISION,
    overhead_ms       DOUBLE PRECISION NOT NULL
);

CREATE INDEX requests_ts_ms_idx ON requests (ts_ms);
CREATE INDEX requests_key_id_idx ON requests (key_id, ts_ms);
CREATE INDEX requests_model_idx ON requests (model, ts_ms);

CREATE TABLE attempts (
    request_id TEXT             NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    idx        BIGINT           NOT NULL,
    model      TEXT             NOT NULL,
    provider   TEXT             NOT NULL,
    outcome    TEXT             NOT NULL,
    status     BIGINT,
    latency_ms DOUBLE PRECISION NOT NULL,
    detail     TEXT,
    PRIMARY KEY (request_id, idx)
);

CREATE TABLE policy_annotations (
    request_id  TEXT   NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    idx         BIGINT NOT NULL,
    policy      TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    annotations TEXT   NOT NULL, -- JSON array of strings
    PRIMARY KEY (request_id, idx)
);

CREATE TABLE api_keys (
    id             TEXT   NOT NULL PRIMARY KEY,
    name           TEXT   NOT NULL,
    hash           TEXT   NOT NULL UNIQUE,
    prefix         TEXT   NOT NULL,
    created_ms     BIGINT NOT NULL,
    revoked_ms     BIGINT,
    routes         TEXT   NOT NULL, -- JSON array of strings; [] = all
    models         TEXT   NOT NULL, -- JSON array of strings; [] = all
    budget_picousd BIGINT,
    budget_period  TEXT   NOT NULL,
    rpm            BIGINT,
    tpm            BIGINT
);

CREATE INDEX api_keys_created_ms_idx ON api_keys (created_ms);

-- Per-key spend per budget period. No foreign key to api_keys: keys may also be
-- defined in configuration, and spend must survive a key's revocation.
CREATE TABLE spend (
    key_id            TEXT   NOT NULL,
    period_start_ms   BIGINT NOT NULL,
    cost_picousd      BIGINT NOT NULL DEFAULT 0,
    requests          BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, period_start_ms)
);
