-- Circuit breaker state per endpoint, written by the dispatcher that owns the endpoint's
-- partition, read by the API.

ALTER TABLE endpoints ADD COLUMN circuit_state TEXT NOT NULL DEFAULT 'closed';
ALTER TABLE endpoints ADD COLUMN circuit_open_until INTEGER;
