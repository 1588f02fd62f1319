-- The kill switch (pause all sending) and per-endpoint pause.

CREATE TABLE control (
    name       TEXT PRIMARY KEY,   -- 'sending_paused'
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
ALTER TABLE endpoints ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
