//! Tenant API keys in the embedded store.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;
use hookstream_model::ids::ApiKeyId;
use hookstream_model::names::Tenant;

use super::SqliteStore;
use super::rows::millis;
use crate::raw::RawApiKey;
use crate::{AccessStore, StoreError};

const KEY_COLUMNS: &str = "id, tenant, name, key_hash, created_at, revoked_at";

fn raw_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawApiKey> {
    Ok(RawApiKey {
        id: row.get(0)?,
        tenant: row.get(1)?,
        name: row.get(2)?,
        key_hash: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

fn load_key(conn: &Connection, id: &str) -> Result<Option<ApiKey>, StoreError> {
    conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
        .query_row([id], raw_key)
        .optional()?
        .map(RawApiKey::decode)
        .transpose()
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let raw = RawApiKey::from_key(key);
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![
                raw.id,
                raw.tenant,
                raw.name,
                raw.key_hash,
                raw.created_at,
                raw.revoked_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_api_key(&self, id: ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.point_read(move |conn| load_key(conn, &id.to_string()))
            .await
    }

    async fn list_api_keys(&self, tenant: &Tenant) -> Result<Vec<ApiKey>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |conn| {
            let raws: Vec<RawApiKey> = conn
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at, id"
                ))?
                .query_map([tenant], raw_key)?
                .collect::<Result<_, _>>()?;
            raws.into_iter().map(RawApiKey::decode).collect()
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        tenant: &Tenant,
        id: ApiKeyId,
        at: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        self.write(move |conn| {
            let id = id.to_string();
            conn.prepare_cached(
                "UPDATE api_keys SET revoked_at = ?3
                 WHERE id = ?1 AND tenant = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![id, tenant, millis(at)])?;
            Ok(load_key(conn, &id)?.filter(|key| key.tenant.as_str() == tenant))
        })
        .await
    }

    async fn revoke_portal_link(
        &self,
        tenant: &Tenant,
        link_id: &str,
        at: OffsetDateTime,
        keep_until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (tenant, link_id) = (tenant.to_string(), link_id.to_owned());
        let (at, keep_until) = (millis(at), millis(keep_until));
        self.write(move |conn| {
            // The first revocation's time stands; rows no link can outlive go.
            conn.prepare_cached(
                "INSERT OR IGNORE INTO portal_link_revocations \
                 (link_id, tenant, revoked_at, keep_until) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![link_id, tenant, at, keep_until])?;
            conn.prepare_cached("DELETE FROM portal_link_revocations WHERE keep_until < ?1")?
                .execute(params![at])?;
            Ok(())
        })
        .await
    }

    async fn portal_link_revoked(
        &self,
        link_id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let link_id = link_id.to_owned();
        let revoked_at: Option<i64> = self
            .point_read(move |conn| {
                conn.prepare_cached(
                    "SELECT revoked_at FROM portal_link_revocations WHERE link_id = ?1",
                )?
                .query_row(params![link_id], |row| row.get(0))
                .optional()
                .map_err(StoreError::from)
            })
            .await?;
        revoked_at.map(crate::raw::from_millis).transpose()
    }
}
