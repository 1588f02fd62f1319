//! Endpoint health in the embedded store: one row of JSON per endpoint.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use hookstream_model::health::EndpointHealth;
use hookstream_model::ids::EndpointId;
use hookstream_model::traffic::{TrafficReport, minute_of};

use super::SqliteStore;
use crate::health::{TRAFFIC_KEPT, decode, encode};
use crate::raw::{from_millis, millis};
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

    async fn put_traffic_reports(&self, reports: &[TrafficReport]) -> Result<(), StoreError> {
        let rows = reports
            .iter()
            .map(|r| {
                let breakers: Vec<String> =
                    r.open_breakers.iter().map(|id| id.to_string()).collect();
                let breakers = serde_json::to_string(&breakers)
                    .map_err(|e| StoreError::corrupt("traffic report", e))?;
                Ok((
                    r.minute,
                    r.reporter.clone(),
                    r.attempts,
                    r.succeeded,
                    breakers,
                    r.more_breakers,
                    millis(r.written_at),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let forget_before = minute_of(OffsetDateTime::now_utc() - TRAFFIC_KEPT);
        self.write(move |conn| {
            let mut put = conn.prepare_cached(
                "INSERT OR REPLACE INTO traffic_reports \
                 (minute, reporter, attempts, succeeded, open_breakers, more_breakers, written_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (minute, reporter, attempts, succeeded, breakers, more, written_at) in &rows {
                put.execute(params![
                    minute, reporter, attempts, succeeded, breakers, more, written_at
                ])?;
            }
            conn.prepare_cached("DELETE FROM traffic_reports WHERE minute < ?1")?
                .execute(params![forget_before])?;
            Ok(())
        })
        .await
    }

    async fn traffic_reports(&self, first: i64) -> Result<Vec<TrafficReport>, StoreError> {
        let rows = self
            .point_read(move |conn| {
                let mut select = conn.prepare_cached(
                    "SELECT minute, reporter, attempts, succeeded, open_breakers, more_breakers, \
                     written_at FROM traffic_reports WHERE minute >= ?1",
                )?;
                let rows = select
                    .query_map(params![first], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                            row.get::<_, i64>(3)?,
                            row.get::<_, String>(4)?,
                            row.get::<_, bool>(5)?,
                            row.get::<_, i64>(6)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(
                |(minute, reporter, attempts, succeeded, breakers, more_breakers, written_at)| {
                    Ok(TrafficReport {
                        reporter,
                        minute,
                        attempts: u64::try_from(attempts).unwrap_or(0),
                        succeeded: u64::try_from(succeeded).unwrap_or(0),
                        open_breakers: crate::health::breakers_of(&breakers)?,
                        more_breakers,
                        written_at: from_millis(written_at)?,
                    })
                },
            )
            .collect()
    }
}
