-- Issue 22: each endpoint's health (success and latency per minute over the last hour, its
-- run of failures, its last success and failure), as JSON, written now and then by the
-- dispatcher that owns the endpoint and read by the API. Apart from `endpoints`, so these
-- writes do not move the endpoint generation (every process's endpoint cache would read again).
CREATE TABLE IF NOT EXISTS endpoint_health (
    endpoint_id TEXT PRIMARY KEY,
    health      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
