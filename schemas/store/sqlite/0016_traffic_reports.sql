-- Issue 23: each dispatcher's attempts per minute and the breakers it holds open, for the
-- console's overview of all tenants at once. Rewritten as a minute's count grows; rows older
-- than two hours are deleted by the writes.
CREATE TABLE IF NOT EXISTS traffic_reports (
    minute        INTEGER NOT NULL,
    reporter      TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    succeeded     INTEGER NOT NULL,
    open_breakers TEXT    NOT NULL,
    more_breakers INTEGER NOT NULL,
    written_at    INTEGER NOT NULL,
    PRIMARY KEY (minute, reporter)
);
