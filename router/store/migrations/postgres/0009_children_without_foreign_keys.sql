-- The request log's child rows without foreign keys (issue 17: the Postgres log writer's
-- throughput). SQLite keeps its foreign keys (migrations/sqlite has no 0009): there the check is
-- an index probe.
-- On Postgres each child row's foreign-key check is a trigger that runs a SELECT ... FOR KEY
-- SHARE on its request: in `cargo bench -p switchyard-bench --bench log` the policy-annotation
-- INSERT (four rows per request) took 134 ms of the ~300 ms a 600-row batch cost server-side. The
-- rows are only ever written together with their request, in one transaction (insert_batch),
-- and purged together with it (purge_before deletes the children in the statement that deletes
-- the requests), so the constraint guarded nothing the code does not already do.

ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_request_id_fkey;
ALTER TABLE policy_annotations DROP CONSTRAINT IF EXISTS policy_annotations_request_id_fkey;

-- One of the indexes every request row updates, for the same reason: the client-id index held
-- an entry for every row, though only rows whose client sent `x-request-id` have a value; the
-- lookup (`client_request_id = $1`) uses a partial index as well.
DROP INDEX IF EXISTS requests_client_request_id_idx;
CREATE INDEX requests_client_request_id_idx ON requests (client_request_id)
    WHERE client_request_id IS NOT NULL;
