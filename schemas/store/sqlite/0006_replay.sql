-- Replay: the dead-letter index (filled from the DLQ topic by the replay service) and replay
-- batches, each with the dead letters it took in order and what became of each.

CREATE TABLE dead_letters (
    delivery_id      TEXT PRIMARY KEY,     -- the dead delivery, dlv_…
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    class            TEXT NOT NULL,        -- class of the last attempt
    dead_lettered_at INTEGER NOT NULL,
    letter           BLOB NOT NULL,        -- the DLQ record as it came (Avro), replayable as is
    replays          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_by_time ON dead_letters (dead_lettered_at, delivery_id);
CREATE INDEX dead_letters_by_endpoint ON dead_letters (endpoint_id, dead_lettered_at, delivery_id);

CREATE TABLE batches (
    id           TEXT PRIMARY KEY,         -- bat_…
    created_by   TEXT NOT NULL,            -- the API key's id
    selection    TEXT NOT NULL,            -- JSON: {"delivery_ids": [...]} or {"filter": {...}}
    dry_run      INTEGER NOT NULL,
    allow_repeat INTEGER NOT NULL,
    status       TEXT NOT NULL,            -- running | completed | cancelled | failed
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX batches_running ON batches (id) WHERE status = 'running';

CREATE TABLE batch_items (
    batch_id         TEXT NOT NULL,
    position         INTEGER NOT NULL,
    dead_delivery_id TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    outcome          TEXT NOT NULL,        -- pending | would_replay | created | skipped
    skip_reason      TEXT,
    delivery_id      TEXT,                 -- the new delivery, once created
    published        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, position)
) WITHOUT ROWID;
CREATE INDEX batch_items_by_new_delivery ON batch_items (delivery_id) WHERE delivery_id IS NOT NULL;
-- Retention finds finished batches by age.
CREATE INDEX batches_by_update ON batches (updated_at) WHERE status != 'running';
