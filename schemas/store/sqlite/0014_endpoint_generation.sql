-- A counter that every change to the endpoints table moves, in whichever process makes it, so
-- a process can keep the endpoints it has read and check them with one small read instead of
-- reading and decoding the row each time (the dispatcher reads the endpoint of every task).
-- Random, not counted up: a database restored from a copy does not bring back a value a
-- process has kept rows under. A later migration that rebuilds `endpoints` (new table, copy,
-- rename) drops these triggers and must create them again: a test checks they exist.
CREATE TABLE IF NOT EXISTS endpoint_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO endpoint_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER IF NOT EXISTS endpoints_inserted AFTER INSERT ON endpoints
BEGIN
    UPDATE endpoint_generation SET generation = random() WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_updated AFTER UPDATE ON endpoints
BEGIN
    UPDATE endpoint_generation SET generation = random() WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS endpoints_deleted AFTER DELETE ON endpoints
BEGIN
    UPDATE endpoint_generation SET generation = random() WHERE id = 1;
END;
