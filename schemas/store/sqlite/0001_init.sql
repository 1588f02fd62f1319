-- Hookstream embedded store, version 1. Times are Unix milliseconds (UTC).

CREATE TABLE endpoints (
    id          TEXT PRIMARY KEY,          -- ep_…
    tenant      TEXT NOT NULL,
    url         TEXT NOT NULL,
    event_types TEXT NOT NULL,             -- JSON list; ["*"] for every type
    secret      TEXT NOT NULL,             -- whsec_…
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER                    -- kept so old deliveries still resolve
);
CREATE INDEX endpoints_by_tenant ON endpoints (tenant, id) WHERE deleted_at IS NULL;

CREATE TABLE events (
    id              TEXT PRIMARY KEY,      -- evt_…
    tenant          TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,         -- JSON text
    idempotency_key TEXT,
    publish_state   TEXT NOT NULL,         -- publishing | published
    created_at      INTEGER NOT NULL
);
-- Finds events whose tasks may not have reached Kafka (see the ingest outbox sweep).
CREATE INDEX events_unpublished ON events (created_at) WHERE publish_state = 'publishing';

-- The idempotency window: one row per (tenant, key) while it counts.
CREATE TABLE idempotency_keys (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;

CREATE TABLE deliveries (
    id          TEXT PRIMARY KEY,          -- dlv_…
    event_id    TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    status      TEXT NOT NULL,             -- pending | delivering | delivered | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX deliveries_by_event ON deliveries (event_id, id);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_by_status ON deliveries (status, id);

-- The attempt log: appended, never edited.
CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    number           INTEGER NOT NULL,     -- 1 for the first attempt
    started_at       INTEGER NOT NULL,
    latency_ms       INTEGER NOT NULL,
    status_code      INTEGER,
    class            TEXT NOT NULL,
    response_snippet TEXT NOT NULL,
    error            TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
