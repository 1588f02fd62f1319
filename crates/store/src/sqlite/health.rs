//! Endpoint health in the embedded store: one row of JSON per endpoint.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use hookstream_model::health::EndpointHealth;
use hookstream_model::ids::EndpointId;

use super::SqliteStore;
use crate::health::{decode, encode};
use crate::raw::millis;
use crate::{HealthStore, StoreError};

#[async_trait]
impl HealthStore for SqliteStore {
    async fn put_endpoint_health(
        &self,
        healths: &[(EndpointId, EndpointHealth)],
    ) -> Result<(), StoreError> {
        let rows = healths
            .iter()
            .map(|(id, health)| Ok((id.to_string(), encode(health)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let now = millis(OffsetDateTime::now_utc());
        // One write, so one commit, for them all.
        self.write(move |conn| {
            let mut put = conn.prepare_cached(
                "INSERT OR REPLACE INTO endpoint_health (endpoint_id, health, updated_at) \
                 VALUES (?1, ?2, ?3)",
            )?;
            for (id, text) in &rows {
                put.execute(params![id, text, now])?;
            }
            Ok(())
        })
        .await
    }

    async fn endpoint_health(
        &self,
        ids: &[EndpointId],
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, StoreError> {
        let ids = ids.to_vec();
        self.point_read(move |conn| {
            let mut select =
                conn.prepare_cached("SELECT health FROM endpoint_health WHERE endpoint_id = ?1")?;
            let mut found = Vec::new();
            for id in ids.iter().copied() {
                let text: Option<String> = select
                    .query_row(params![id.to_string()], |row| row.get(0))
                    .optional()?;
                if let Some(health) = text.and_then(|text| decode(id, &text)) {
                    found.push((id, health));
                }
            }
            Ok(found)
        })
        .await
    }
}
