//! Tenant API keys on ScyllaDB: one row per key, found by id on every request, and each
//! tenant's key ids in one small partition.

use async_trait::async_trait;
use scylla::value::CqlTimestamp;
use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;
use hookstream_model::ids::ApiKeyId;
use hookstream_model::names::Tenant;

use super::{ScyllaStore, first_row, ts};
use crate::raw::RawApiKey;
use crate::{AccessStore, StoreError};

type KeyRow = (
    String,
    String,
    String,
    Vec<u8>,
    CqlTimestamp,
    Option<CqlTimestamp>,
);

impl ScyllaStore {
    async fn load_api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let result = self.run(&self.statements.select_api_key, (id,)).await?;
        first_row::<KeyRow>(result)?
            .map(|(id, tenant, name, key_hash, created, revoked)| {
                RawApiKey {
                    id,
                    tenant,
                    name,
                    key_hash,
                    created_at: created.0,
                    revoked_at: revoked.map(|t| t.0),
                }
                .decode()
            })
            .transpose()
    }
}

#[async_trait]
impl AccessStore for ScyllaStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let id = key.id.to_string();
        // The key row first: a listed id always has its row.
        self.run(
            &self.statements.insert_api_key,
            (
                &id,
                key.tenant.as_str(),
                &key.name,
                key.key_hash.as_slice(),
                ts(key.created_at),
                key.revoked_at.map(ts),
            ),
        )
        .await?;
        self.run(
            &self.statements.insert_api_key_of_tenant,
            (key.tenant.as_str(), &id),
        )
        .await?;
        Ok(())
    }

    async fn get_api_key(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.load_api_key(&id.to_string()).await
    }

    async fn list_api_keys(&self, tenant: &Tenant) -> Result<Vec<ApiKey>, StoreError> {
        let ids = self
            .ids(
                &self.statements.select_api_key_ids_of_tenant,
                (tenant.as_str(),),
            )
            .await?;
        let mut keys = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(key) = self.load_api_key(id).await? {
                keys.push(key);
            }
        }
        keys.sort_by_key(|key| (key.created_at, key.id));
        Ok(keys)
    }

    async fn revoke_api_key(
        &self,
        tenant: &Tenant,
        id: ApiKeyId,
        at: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError> {
        let id = id.to_string();
        match self.load_api_key(&id).await? {
            Some(key) if key.tenant == *tenant => {
                if !key.is_revoked() {
                    // Not applied means another revoke came first; its time stands.
                    self.run(&self.statements.revoke_api_key, (ts(at), &id))
                        .await?;
                }
                self.load_api_key(&id).await
            }
            _ => Ok(None),
        }
    }

    async fn revoke_portal_link(
        &self,
        tenant: &Tenant,
        link_id: &str,
        at: OffsetDateTime,
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // The first revocation's time stands (two at once: either time will do).
        if self.portal_link_revoked(link_id).await?.is_some() {
            return Ok(());
        }
        let ttl = i32::try_from((keep_until - at).whole_seconds().max(1)).unwrap_or(i32::MAX);
        self.run(
            &self.statements.insert_portal_link_revocation,
            (link_id, tenant.as_str(), ts(at), ttl),
        )
        .await
        .map(|_| ())
    }

    async fn portal_link_revoked(
        &self,
        link_id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let result = self
            .run(&self.statements.select_portal_link_revocation, (link_id,))
            .await?;
        first_row::<(Option<CqlTimestamp>,)>(result)?
            .and_then(|(at,)| at)
            .map(|at| crate::raw::from_millis(at.0))
            .transpose()
    }
}
