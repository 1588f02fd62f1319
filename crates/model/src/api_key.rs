//! Tenant API keys as the store keeps them: never the key, only its SHA-256 hash.

use time::OffsetDateTime;

use crate::ids::ApiKeyId;
use crate::names::Tenant;

/// A key that acts for one tenant only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant: Tenant,
    /// What the key is for, as its creator described it.
    pub name: String,
    /// SHA-256 of the whole key. A key is 256 random bits, so a fast hash is enough: nobody
    /// can search that space, and lookup stays cheap on every request.
    pub key_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    /// Set once, when the key is revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}
