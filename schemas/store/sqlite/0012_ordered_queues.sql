-- Issue 21: strict ordering. Each strict endpoint's deliveries still to send, in arrival order
-- (position: the task's offset on its deliveries partition), and which endpoints have a queue
-- on each partition, so a dispatcher given the partition finds them, with the last position
-- removed from each queue (`last_removed`), so a driver starts reading past what is gone.
CREATE TABLE ordered_queue (
    endpoint_id TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    partition   INTEGER NOT NULL,
    task        BLOB    NOT NULL,
    PRIMARY KEY (endpoint_id, position)
) WITHOUT ROWID;

CREATE TABLE ordered_endpoints (
    partition   INTEGER NOT NULL,
    endpoint_id TEXT    NOT NULL,
    last_removed INTEGER NOT NULL DEFAULT -1,
    PRIMARY KEY (partition, endpoint_id)
) WITHOUT ROWID;
