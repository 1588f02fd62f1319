-- Issue 19: an event whose tasks Kafka refuses leaves the outbox as 'set_aside', with the reason;
-- a tenant's deliveries are listed through an index, not a scan.
ALTER TABLE events ADD COLUMN set_aside_reason TEXT;
CREATE INDEX IF NOT EXISTS deliveries_by_tenant ON deliveries (tenant, id);
