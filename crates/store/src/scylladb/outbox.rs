//! The outbox: events whose tasks may not be in Kafka yet, by the hour they were created, so the
//! sweep reads a few partitions rather than the whole table; marked published, set aside, and
//! swept.

use std::time::Duration;

use scylla::response::query_result::QueryResult;
use scylla::value::CqlTimestamp;
use time::OffsetDateTime;

use hookstream_model::delivery::Delivery;
use hookstream_model::event::{Event, PublishState};
use hookstream_model::ids::EventId;

use super::cql::{self, hour_of, outbox_shard};
use super::{ScyllaStore, first_row, rows, ts};
use crate::StoreError;

use super::intake::{ABANDON_AFTER, Fate, PENDING, StoredEvent};

/// Hours the outbox's low-water mark stays behind the clock, for writers whose clocks lag.
const CLOCK_MARGIN_HOURS: i32 = 2;
/// How often the outbox table of older versions is read once it was found empty.
const LEGACY_OUTBOX_RECHECK: Duration = Duration::from_secs(600);
/// The `control` row holding the first hour that may still have outbox rows.
const OUTBOX_FIRST_HOUR: &str = "outbox_first_hour";

/// An outbox row; `hour` is `None` for a row of the table of older versions.
struct OutboxRow {
    created_at: CqlTimestamp,
    event_id: String,
    hour: Option<i32>,
}

impl OutboxRow {
    /// The rows of a `SELECT created_at, event_id` on one outbox partition.
    fn all_of(result: QueryResult, hour: Option<i32>) -> Result<Vec<Self>, StoreError> {
        Ok(rows::<(CqlTimestamp, String)>(result)?
            .into_iter()
            .map(|(created_at, event_id)| Self {
                created_at,
                event_id,
                hour,
            })
            .collect())
    }
}

impl ScyllaStore {
    /// See [`crate::Store::mark_events_published`].
    pub(super) async fn mark_published(&self, id: EventId) -> Result<(), StoreError> {
        let row = self.outbox_row_of(id).await?;
        self.run(&self.statements.mark_published, (self.ttl(), &row.event_id))
            .await?;
        self.delete_outbox(&row).await
    }

    /// See [`crate::Store::set_aside_event`].
    pub(super) async fn set_aside(&self, id: EventId, reason: &str) -> Result<(), StoreError> {
        let row = self.outbox_row_of(id).await?;
        self.set_aside_row(&row, reason).await
    }

    /// The outbox row of a stored event: in the hourly outbox, or in the table of versions
    /// before issue 19 for an event they created (it names no request).
    async fn outbox_row_of(&self, id: EventId) -> Result<OutboxRow, StoreError> {
        let event_id = id.to_string();
        let stored = self
            .event_row(&event_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(event_id.clone()))?;
        let created_at = stored.event.created_at;
        Ok(OutboxRow {
            created_at: ts(created_at),
            event_id,
            hour: stored.request.is_some().then(|| hour_of(created_at)),
        })
    }

    /// Takes an event out of the outbox for good, in state `set_aside` with the reason.
    async fn set_aside_row(&self, row: &OutboxRow, reason: &str) -> Result<(), StoreError> {
        self.run(
            &self.statements.set_event_state,
            (
                self.ttl(),
                PublishState::SetAside.as_str(),
                Some(reason),
                &row.event_id,
            ),
        )
        .await?;
        crate::metered::count_set_aside();
        self.delete_outbox(row).await
    }

    async fn delete_outbox(&self, row: &OutboxRow) -> Result<(), StoreError> {
        let s = &self.statements;
        let shard = outbox_shard(&row.event_id);
        match row.hour {
            Some(hour) => {
                self.run(
                    &s.delete_outbox,
                    (shard, hour, row.created_at, &row.event_id),
                )
                .await?
            }
            None => {
                self.run(
                    &s.delete_unpublished,
                    (shard, row.created_at, &row.event_id),
                )
                .await?
            }
        };
        Ok(())
    }

    /// See [`crate::Store::unpublished_events`]: committed events still in the outbox. On the
    /// way it removes abandoned requests' events and sets aside rows that do not decode.
    pub(super) async fn sweep_outbox(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(Event, Vec<Delivery>)>, StoreError> {
        let mut waiting = self.outbox_rows(before, limit).await?;
        waiting.sort_by(|a, b| (a.created_at.0, &a.event_id).cmp(&(b.created_at.0, &b.event_id)));
        waiting.truncate(limit as usize);
        let mut out = Vec::with_capacity(waiting.len());
        for row in waiting {
            let stored = match self.event_row(&row.event_id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => {
                    self.delete_outbox(&row).await?;
                    continue;
                }
                Err(err @ StoreError::Corrupt { .. }) => {
                    self.set_aside_undecodable(&row, &err).await?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            match stored.state.as_str() {
                "publishing" => {}
                PENDING => match self.sweep_fate(&stored).await? {
                    Fate::Committed => {}
                    Fate::Abandoned => {
                        self.remove_event(&stored.event, true).await?;
                        continue;
                    }
                    Fate::Undecided => continue,
                },
                // Published or set aside: the row outlived a removal that failed.
                _ => {
                    self.delete_outbox(&row).await?;
                    continue;
                }
            }
            match self.deliveries_of_event(stored.event.id).await {
                Ok(deliveries) => out.push((stored.event, deliveries)),
                Err(err @ StoreError::Corrupt { .. }) => {
                    self.set_aside_undecodable(&row, &err).await?
                }
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    /// What the sweep makes of a pending event: a request undecided for too long is abandoned.
    async fn sweep_fate(&self, stored: &StoredEvent) -> Result<Fate, StoreError> {
        let Some(request) = stored.request.as_deref() else {
            return Ok(Fate::Committed);
        };
        let fate = self.fate(request).await?;
        if fate != Fate::Undecided
            || stored.event.created_at > OffsetDateTime::now_utc() - ABANDON_AFTER
        {
            return Ok(fate);
        }
        self.abandon(request).await
    }

    /// An outbox row whose event (or a delivery of it) does not decode can never be published:
    /// it is set aside so the sweep goes on with the others.
    async fn set_aside_undecodable(
        &self,
        row: &OutboxRow,
        err: &StoreError,
    ) -> Result<(), StoreError> {
        tracing::error!(event = %row.event_id, error = %err, "an event in the outbox does not decode; set aside");
        self.set_aside_row(row, &format!("does not decode: {err}"))
            .await
    }

    /// Outbox rows created before `before`, at least `limit` of the oldest if there are that many.
    async fn outbox_rows(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let s = &self.statements;
        let first = self.first_outbox_hour().await?;
        // Hours before `settled` take no new rows, and every row of theirs is older than
        // `before`: one found empty stays empty.
        let settled =
            (hour_of(OffsetDateTime::now_utc()) - CLOCK_MARGIN_HOURS).min(hour_of(before));
        let per_shard = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut found = Vec::new();
        // Every hour before `empty_until` was found empty (and takes no new rows).
        let mut empty_until = first;
        for hour in first..=hour_of(before) {
            let found_before = found.len();
            for shard in 0..cql::OUTBOX_SHARDS {
                let result = self
                    .run(&s.select_outbox, (shard, hour, ts(before), per_shard))
                    .await?;
                found.extend(OutboxRow::all_of(result, Some(hour))?);
            }
            if found.len() == found_before && hour == empty_until && hour < settled {
                empty_until = hour + 1;
            }
            if found.len() >= limit as usize {
                break;
            }
        }
        if empty_until > first {
            self.run(
                &s.upsert_control,
                (
                    OUTBOX_FIRST_HOUR,
                    empty_until.to_string(),
                    ts(OffsetDateTime::now_utc()),
                ),
            )
            .await?;
        }
        found.extend(self.legacy_outbox_rows(before, per_shard).await?);
        Ok(found)
    }

    /// The first hour that may still hold outbox rows; a new outbox starts near now.
    async fn first_outbox_hour(&self) -> Result<i32, StoreError> {
        let s = &self.statements;
        let result = self.run(&s.select_control, (OUTBOX_FIRST_HOUR,)).await?;
        if let Some((Some(value),)) = first_row::<(Option<String>,)>(result)? {
            return value
                .parse()
                .map_err(|_| StoreError::corrupt("outbox first hour", value));
        }
        // The outbox table is new with this version, so it holds nothing older.
        let start = hour_of(OffsetDateTime::now_utc()) - CLOCK_MARGIN_HOURS;
        self.run(
            &s.upsert_control,
            (
                OUTBOX_FIRST_HOUR,
                start.to_string(),
                ts(OffsetDateTime::now_utc()),
            ),
        )
        .await?;
        Ok(start)
    }

    /// Rows left in the outbox table of versions before issue 19.
    async fn legacy_outbox_rows(
        &self,
        before: OffsetDateTime,
        per_shard: i32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // Found empty lately: looked at again now and then, as instances of the older
        // version may still be running (a rolling upgrade) and write to it.
        let now = tokio::time::Instant::now();
        if let Ok(checked) = self.legacy_outbox_checked.lock()
            && checked.is_some_and(|at| now < at + LEGACY_OUTBOX_RECHECK)
        {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for shard in 0..cql::OUTBOX_SHARDS {
            let result = self
                .run(
                    &self.statements.select_unpublished,
                    (shard, ts(before), per_shard),
                )
                .await?;
            found.extend(OutboxRow::all_of(result, None)?);
        }
        if let Ok(mut checked) = self.legacy_outbox_checked.lock() {
            *checked = found.is_empty().then_some(now);
        }
        Ok(found)
    }
}
