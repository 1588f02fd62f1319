//! Deliveries and attempts: reading them by id, writing a delivery with its indexes, and
//! walking the day buckets that list them by endpoint or tenant.

use scylla::statement::prepared::PreparedStatement;
use time::OffsetDateTime;

use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::ids::{DeliveryId, EventId};
use hookstream_model::names::Tenant;

use super::cql::{day_of, day_of_millis};
use super::intake::StoredEvent;
use super::{
    DeliveryRow, DeliveryWithClaimRow, EventRow, ScyllaStore, first_row, into_page, raw_delivery,
    rows, ts,
};
use crate::claim::StoredClaim;
use crate::raw::{RawEvent, from_millis};
use crate::{DeliveryFilter, NewAttempt, Page, PageRequest, StoreError};

impl ScyllaStore {
    pub(super) async fn delivery_by_text(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let result = self.run(&self.statements.select_delivery, (id,)).await?;
        first_row::<DeliveryRow>(result)?
            .map(|row| raw_delivery(row).decode())
            .transpose()
    }

    pub(super) async fn delivery_with_claim(
        &self,
        id: &str,
    ) -> Result<Option<(Delivery, StoredClaim)>, StoreError> {
        let result = self
            .run(&self.statements.select_delivery_with_claim, (id,))
            .await?;
        let Some(row) = first_row::<DeliveryWithClaimRow>(result)? else {
            return Ok(None);
        };
        let (a, b, c, d, e, f, g, h, i, j, k, token, until) = row;
        let delivery = raw_delivery((a, b, c, d, e, f, g, h, i, j, k)).decode()?;
        let claim = StoredClaim {
            token,
            until: until.map(|t| from_millis(t.0)).transpose()?,
        };
        Ok(Some((delivery, claim)))
    }

    pub(super) async fn insert_attempt_row(
        &self,
        delivery_id: &str,
        number: i32,
        a: &NewAttempt,
        ttl: i32,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.insert_attempt,
            (
                delivery_id,
                number,
                ts(a.started_at),
                i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
                a.status_code.map(i32::from),
                a.class.as_str(),
                a.response_snippet.as_str(),
                a.error.as_deref(),
                a.next_attempt_at.map(ts),
                a.tier.as_deref(),
                ttl,
            ),
        )
        .await?;
        Ok(())
    }

    /// An event as stored, with its publish state and the request that created it.
    pub(super) async fn event_row(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let result = self.run(&self.statements.select_event, (id,)).await?;
        let Some(row) = first_row::<EventRow>(result)? else {
            return Ok(None);
        };
        let (id, tenant, event_type, payload, idempotency_key, created_at, state, request) = row;
        let event = RawEvent {
            id,
            tenant,
            event_type,
            payload,
            idempotency_key,
            created_at: created_at.0,
        }
        .decode()?;
        Ok(Some(StoredEvent {
            event,
            state: state.unwrap_or_default(),
            request,
        }))
    }

    pub(super) async fn deliveries_of_event(
        &self,
        id: EventId,
    ) -> Result<Vec<Delivery>, StoreError> {
        let ids = self
            .ids(
                &self.statements.select_delivery_ids_of_event,
                (id.to_string(), String::new(), i32::MAX),
            )
            .await?;
        self.deliveries_by_ids(&ids).await
    }

    pub(super) async fn deliveries_by_ids(
        &self,
        ids: &[String],
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // An index row can outlive its delivery by moments (TTLs written apart).
            if let Some(delivery) = self.delivery_by_text(id).await? {
                out.push(delivery);
            }
        }
        Ok(out)
    }

    pub(super) async fn ids(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<String>, StoreError> {
        let result = self.run(statement, values).await?;
        rows::<(String,)>(result).map(|rows| rows.into_iter().map(|(id,)| id).collect())
    }

    /// The TTL of a delivery row's cells: none while it is under way, so a delivery unfinished
    /// past the retention (an endpoint paused that long) is not forgotten; the retention once final.
    pub(super) fn delivery_ttl(&self, status: DeliveryStatus) -> i32 {
        if status.is_final() { self.ttl() } else { 0 }
    }

    /// Stores a delivery, findable by id and by its event (the index lives for `ttl`). Its row
    /// lives for `row_ttl`: see [`Self::delivery_ttl`], and `create_one` for why ingest first
    /// writes it with the retention.
    pub(super) async fn write_delivery(
        &self,
        d: &Delivery,
        row_ttl: i32,
        ttl: i32,
    ) -> Result<(), StoreError> {
        self.write_delivery_row(d, row_ttl).await?;
        self.run(
            &self.statements.insert_delivery_of_event,
            (d.event_id.to_string(), d.id.to_string(), ttl),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn write_delivery_row(
        &self,
        d: &Delivery,
        row_ttl: i32,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.write_delivery,
            (
                row_ttl,
                d.event_id.to_string(),
                d.endpoint_id.to_string(),
                d.tenant.as_str(),
                d.event_type.as_str(),
                d.status.as_str(),
                i32::try_from(d.attempts).unwrap_or(i32::MAX),
                ts(d.created_at),
                ts(d.updated_at),
                d.next_attempt_at.map(ts),
                d.next_tier.as_deref(),
                d.id.to_string(),
            ),
        )
        .await?;
        Ok(())
    }

    /// Lists a delivery by endpoint and by tenant.
    pub(super) async fn index_delivery(&self, d: &Delivery, ttl: i32) -> Result<(), StoreError> {
        let s = &self.statements;
        let day = day_of(d.created_at);
        let delivery_id = d.id.to_string();
        self.run(
            &s.insert_delivery_of_endpoint,
            (d.endpoint_id.to_string(), day, &delivery_id, ttl),
        )
        .await?;
        self.run(
            &s.insert_delivery_of_tenant,
            (d.tenant.as_str(), day, &delivery_id, ttl),
        )
        .await?;
        Ok(())
    }

    /// Walks the day buckets of `days` in order, collecting deliveries that pass `keep`
    /// until `limit + 1` are found.
    pub(super) async fn scan_days(
        &self,
        statement: &PreparedStatement,
        partition: &str,
        after: &str,
        days: std::ops::RangeInclusive<i32>,
        limit: u32,
        keep: impl Fn(&Delivery) -> bool,
    ) -> Result<Vec<Delivery>, StoreError> {
        let wanted = limit as usize + 1;
        let mut found = Vec::new();
        let mut cursor = after.to_owned();
        for day in days {
            loop {
                let ids = self
                    .ids(statement, (partition, day, &cursor, wanted as i32))
                    .await?;
                let Some(last) = ids.last().cloned() else {
                    break;
                };
                let exhausted = ids.len() < wanted;
                found.extend(
                    self.deliveries_by_ids(&ids)
                        .await?
                        .into_iter()
                        .filter(&keep),
                );
                cursor = last;
                if found.len() >= wanted || exhausted {
                    break;
                }
            }
            if found.len() >= wanted {
                break;
            }
        }
        found.truncate(wanted);
        Ok(found)
    }

    /// Whether the endpoint and event a delivery filter names (if any) are the tenant's.
    pub(super) async fn belongs_to(
        &self,
        tenant: &Tenant,
        filter: &DeliveryFilter,
    ) -> Result<bool, StoreError> {
        if let Some(endpoint_id) = filter.endpoint_id {
            let result = self
                .run(
                    &self.statements.select_endpoint_tenant,
                    (endpoint_id.to_string(),),
                )
                .await?;
            let owner = first_row::<(Option<String>,)>(result)?.and_then(|(owner,)| owner);
            if owner.as_deref() != Some(tenant.as_str()) {
                return Ok(false);
            }
        }
        if let Some(event_id) = filter.event_id {
            // An event past its retention may still have deliveries under way: the by-event
            // read (bounded by the event's fan-out) filters those by tenant.
            let owner = self.event_row(&event_id.to_string()).await?;
            if owner.is_some_and(|stored| stored.event.tenant != *tenant) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The first day a list needs to look at: the cursor's, or the oldest kept.
    fn first_day(&self, after: &str) -> i32 {
        let oldest = day_of(OffsetDateTime::now_utc() - self.retention) - 1;
        // A day early: a delivery's bucket is its `created_at`'s day, and its id is made a
        // moment after that time, so the cursor's id may fall on the next day.
        DeliveryId::parse(after, "after").ok().map_or(oldest, |id| {
            (day_of_millis(id.created_at_millis()) - 1).max(oldest)
        })
    }

    /// The day buckets a page can find deliveries in: from the cursor (or the retention's
    /// start) to today, narrowed by the filter's times (a delivery's bucket is the day of its
    /// `created_at`).
    fn days_to_scan(&self, after: &str, filter: &DeliveryFilter) -> std::ops::RangeInclusive<i32> {
        let today = day_of(OffsetDateTime::now_utc());
        let first = filter
            .since
            .map_or(i32::MIN, day_of)
            .max(self.first_day(after));
        let last = filter.until.map_or(today, day_of).min(today);
        first..=last
    }
}

impl ScyllaStore {
    /// A page of deliveries by the filter's most selective index.
    pub(super) async fn deliveries_page(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT);
        let after = page.after.clone().unwrap_or_default();
        let keep = |d: &Delivery| filter.matches(d);
        // Another tenant's endpoint or event lists nothing, without reading its deliveries
        // (the time a read of its days takes would tell its volume).
        if let Some(tenant) = &filter.tenant
            && !self.belongs_to(tenant, filter).await?
        {
            return Ok(into_page(Vec::new(), limit));
        }
        let found = if let Some(event_id) = filter.event_id {
            let ids = self
                .ids(
                    &self.statements.select_delivery_ids_of_event,
                    (event_id.to_string(), &after, i32::MAX),
                )
                .await?;
            let mut found: Vec<Delivery> = self
                .deliveries_by_ids(&ids)
                .await?
                .into_iter()
                .filter(keep)
                .collect();
            found.truncate(limit as usize + 1);
            found
        } else if let Some(endpoint_id) = filter.endpoint_id {
            self.scan_days(
                &self.statements.select_delivery_ids_of_endpoint,
                &endpoint_id.to_string(),
                &after,
                self.days_to_scan(&after, filter),
                limit,
                keep,
            )
            .await?
        } else if let Some(tenant) = &filter.tenant {
            self.scan_days(
                &self.statements.select_delivery_ids_of_tenant,
                tenant.as_str(),
                &after,
                self.days_to_scan(&after, filter),
                limit,
                keep,
            )
            .await?
        } else {
            return Err(StoreError::Backend(
                "scylla: listing deliveries needs a tenant, event or endpoint filter".into(),
            ));
        };
        Ok(into_page(found, limit))
    }
}
