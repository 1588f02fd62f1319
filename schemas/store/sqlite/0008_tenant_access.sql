-- Tenant API keys, as SHA-256 hashes only; revoked keys stay listed, for the audit trail.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, id);

-- The tenant a replay batch belongs to (NULL: an admin batch across tenants).
ALTER TABLE batches ADD COLUMN tenant TEXT;
CREATE INDEX batches_by_tenant ON batches (tenant, id) WHERE tenant IS NOT NULL;
