-- Issue 23: portal links revoked before they expire. A link is checked alone (nothing is
-- stored when it is issued); a revoked one's id is kept here until no link can outlive it
-- (links last at most 24 hours), and every request with a link looks for it.
CREATE TABLE IF NOT EXISTS portal_link_revocations (
    link_id    TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    keep_until INTEGER NOT NULL
);
