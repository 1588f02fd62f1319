//! The part of the store that API authentication uses: tenant API keys, kept as hashes.

use async_trait::async_trait;
use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;
use hookstream_model::ids::ApiKeyId;
use hookstream_model::names::Tenant;

use crate::StoreError;

#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    async fn get_api_key(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError>;
    /// A tenant's keys, revoked ones too, oldest first.
    async fn list_api_keys(&self, tenant: &Tenant) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes one of the tenant's keys and returns it as it now stands; `None` if the tenant
    /// has no such key. A key revoked already keeps the time it was first revoked.
    async fn revoke_api_key(
        &self,
        tenant: &Tenant,
        id: ApiKeyId,
        at: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError>;
    /// Records the tenant's portal link `link_id` revoked at `at`, until `keep_until` (when no
    /// link can still be live); revoking it again changes nothing.
    async fn revoke_portal_link(
        &self,
        tenant: &Tenant,
        link_id: &str,
        at: OffsetDateTime,
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// When the portal link `link_id` was revoked, if it was.
    async fn portal_link_revoked(
        &self,
        link_id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError>;
}
