-- Attempt claims: the copy of a task that may send a delivery's next attempt holds a lease on it
-- (a random token, until when). The token stays after the attempt is recorded, so a retried
-- record can tell its own write from another copy's.
ALTER TABLE deliveries ADD COLUMN claim_token TEXT;
ALTER TABLE deliveries ADD COLUMN claim_until INTEGER;
