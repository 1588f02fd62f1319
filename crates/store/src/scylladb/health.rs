//! Endpoint health on ScyllaDB: one row of JSON per endpoint, written only by the dispatcher
//! that owns the endpoint's partition.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use hookstream_model::health::EndpointHealth;
use hookstream_model::ids::EndpointId;
use hookstream_model::traffic::{TrafficReport, minute_of};
use scylla::value::CqlTimestamp;

use super::decode::rows;
use super::{ScyllaStore, first_row, ts};
use crate::health::{decode, encode, ids_of};
use crate::raw::from_millis;
use crate::{HealthStore, StoreError};

/// Statements in flight at once for one call.
const AT_ONCE: usize = 16;

#[async_trait]
impl HealthStore for ScyllaStore {
    async fn put_endpoint_health(
        &self,
        healths: &[(EndpointId, EndpointHealth)],
    ) -> Result<(), StoreError> {
        let at = OffsetDateTime::now_utc();
        let rows = healths
            .iter()
            .map(|(id, health)| Ok((*id, encode(health)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        futures::stream::iter(rows)
            .map(|(id, text)| self.put_health_row(id, text, at))
            .buffer_unordered(AT_ONCE)
            .try_collect::<()>()
            .await
    }

    async fn endpoint_health(
        &self,
        ids: &[EndpointId],
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, StoreError> {
        // A page of endpoints at most: one point read each, a few side by side.
        let found: Vec<Option<(EndpointId, EndpointHealth)>> = futures::stream::iter(ids.to_vec())
            .map(|id| self.health_row(id))
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn put_traffic_reports(&self, reports: &[TrafficReport]) -> Result<(), StoreError> {
        // Rows go after two hours by the table's default TTL.
        futures::stream::iter(reports.to_vec())
            .map(|report| async move { self.put_traffic_row(&report).await })
            .buffer_unordered(AT_ONCE)
            .try_collect::<()>()
            .await
    }

    async fn traffic_reports(&self, first: i64) -> Result<Vec<TrafficReport>, StoreError> {
        // One partition per minute: the few the overview reads, side by side.
        let now = minute_of(OffsetDateTime::now_utc());
        let minutes: Vec<i64> = (first..=now.max(first)).take(MOST_MINUTES_READ).collect();
        let found: Vec<Vec<TrafficReport>> = futures::stream::iter(minutes)
            .map(|minute| self.traffic_rows(minute))
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

/// The most minute partitions one `traffic_reports` call reads (the rows are kept two hours).
const MOST_MINUTES_READ: usize = 120;

type TrafficRow = (
    String,
    Option<i64>,
    Option<i64>,
    Option<Vec<String>>,
    Option<bool>,
    Option<CqlTimestamp>,
);

impl ScyllaStore {
    async fn put_health_row(
        &self,
        id: EndpointId,
        text: String,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.upsert_endpoint_health,
            (id.to_string(), text, ts(at)),
        )
        .await
        .map(|_| ())
    }

    async fn health_row(
        &self,
        id: EndpointId,
    ) -> Result<Option<(EndpointId, EndpointHealth)>, StoreError> {
        let result = self
            .run(&self.statements.select_endpoint_health, (id.to_string(),))
            .await?;
        Ok(first_row::<(Option<String>,)>(result)?
            .and_then(|(text,)| text)
            .and_then(|text| decode(id, &text))
            .map(|health| (id, health)))
    }

    async fn put_traffic_row(&self, report: &TrafficReport) -> Result<(), StoreError> {
        let breakers: Vec<String> = report
            .open_breakers
            .iter()
            .map(|id| id.to_string())
            .collect();
        self.run(
            &self.statements.upsert_traffic_report,
            (
                report.minute,
                report.reporter.as_str(),
                i64::try_from(report.attempts).unwrap_or(i64::MAX),
                i64::try_from(report.succeeded).unwrap_or(i64::MAX),
                breakers,
                report.more_breakers,
                ts(report.written_at),
            ),
        )
        .await
        .map(|_| ())
    }

    async fn traffic_rows(&self, minute: i64) -> Result<Vec<TrafficReport>, StoreError> {
        let result = self
            .run(&self.statements.select_traffic_reports, (minute,))
            .await?;
        rows::<TrafficRow>(result)?
            .into_iter()
            .map(
                |(reporter, attempts, succeeded, breakers, more, written_at)| {
                    Ok(TrafficReport {
                        reporter,
                        minute,
                        attempts: u64::try_from(attempts.unwrap_or(0)).unwrap_or(0),
                        succeeded: u64::try_from(succeeded.unwrap_or(0)).unwrap_or(0),
                        open_breakers: ids_of(&breakers.unwrap_or_default())?,
                        more_breakers: more.unwrap_or(false),
                        written_at: from_millis(written_at.map_or(0, |at| at.0))?,
                    })
                },
            )
            .collect()
    }
}
