-- Retention: the purge finds what has expired by these columns without scanning whole tables.
CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys (expires_at);
CREATE INDEX IF NOT EXISTS deliveries_by_update ON deliveries (updated_at);
CREATE INDEX IF NOT EXISTS events_by_creation ON events (created_at);
