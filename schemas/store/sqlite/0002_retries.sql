-- Retries: when and on which tier a delivery is tried next, per delivery and per attempt;
-- a per-endpoint attempt limit; `failed` (no retries yet) becomes `dead_lettered`.

ALTER TABLE deliveries ADD COLUMN next_attempt_at INTEGER;
ALTER TABLE deliveries ADD COLUMN next_tier TEXT;
ALTER TABLE attempts ADD COLUMN next_attempt_at INTEGER;
ALTER TABLE attempts ADD COLUMN tier TEXT;
ALTER TABLE endpoints ADD COLUMN max_attempts INTEGER;
UPDATE deliveries SET status = 'dead_lettered' WHERE status = 'failed';
