//! The dead-letter index on ScyllaDB: each letter stored once by its id and in its day's
//! partitions (the day's, and its tenant's), and listed day by day, oldest first.

use scylla::value::CqlTimestamp;
use time::OffsetDateTime;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::replay::{DeadLetterFilter, IndexedDeadLetter};

use super::cql::day_of;
use super::{ScyllaStore, first_row, rows, ts};
use crate::raw::{self, from_millis, millis};
use crate::{Page, PageRequest, StoreError};

use super::replay::SCAN;

type DeadLetterRow = (Vec<u8>, Option<i32>, Option<String>, Option<String>);
type DayRow = (CqlTimestamp, String, String, String, String, String);

/// A dead letter's row: the letter, its replay count and its last claim.
pub(super) struct StoredLetter {
    pub(super) indexed: IndexedDeadLetter,
    pub(super) last_claim: Option<String>,
    pub(super) last_claim_delivery: Option<String>,
}

impl ScyllaStore {
    pub(super) async fn stored_letter(&self, id: &str) -> Result<Option<StoredLetter>, StoreError> {
        let result = self.run(&self.statements.select_dead_letter, (id,)).await?;
        first_row::<DeadLetterRow>(result)?
            .map(|(letter, replays, last_claim, last_claim_delivery)| {
                Ok(StoredLetter {
                    indexed: raw::decode_dead_letter(
                        &letter,
                        u32::try_from(replays.unwrap_or(0)).unwrap_or(0),
                    )?,
                    last_claim,
                    last_claim_delivery,
                })
            })
            .transpose()
    }

    /// Indexes a dead letter: its row by id once (a letter read again keeps its replay count),
    /// and its rows in its day's partition and its tenant's (rewritten alike when read again).
    pub(super) async fn index_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let bytes = letter
            .encode()
            .map_err(|e| StoreError::Backend(format!("encoding a dead letter: {e}")))?;
        let task = &letter.task;
        let id = task.delivery_id.to_string();
        let dead_at = ts(letter.dead_lettered_at);
        // IF NOT EXISTS: a letter read again after a crash keeps its replay count.
        self.run(
            &self.statements.insert_dead_letter,
            (&id, bytes, dead_at, self.ttl()),
        )
        .await?;
        self.run(
            &self.statements.insert_dead_letter_of_day,
            (
                day_of(letter.dead_lettered_at),
                dead_at,
                &id,
                task.endpoint_id.to_string(),
                task.tenant.as_str(),
                task.event_type.as_str(),
                letter.last_class.as_str(),
                self.ttl(),
            ),
        )
        .await?;
        self.record_tenant_dead_letters().await?;
        self.run(
            &self.statements.insert_dead_letter_of_tenant_day,
            (
                task.tenant.as_str(),
                day_of(letter.dead_lettered_at),
                dead_at,
                &id,
                task.endpoint_id.to_string(),
                task.event_type.as_str(),
                letter.last_class.as_str(),
                self.ttl(),
            ),
        )
        .await?;
        Ok(())
    }

    /// A page of dead letters by the filter, oldest first, read day partition by day partition.
    pub(super) async fn dead_letters_page(
        &self,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> Result<Page<IndexedDeadLetter>, StoreError> {
        let invalid = || StoreError::InvalidCursor(page.after.clone().unwrap_or_default());
        let (mut after_ms, mut after_id) = match page.after.as_deref() {
            None => (i64::MIN, String::new()),
            Some(cursor) => {
                let (ms, id) = cursor.split_once(':').ok_or_else(invalid)?;
                (ms.parse::<i64>().map_err(|_| invalid())?, id.to_owned())
            }
        };
        let now = OffsetDateTime::now_utc();
        let oldest = now - self.retention;
        let since = filter.since.map_or(oldest, |s| s.max(oldest));
        after_ms = after_ms.max(millis(since) - 1);
        let last_day = day_of(filter.until.unwrap_or(now).min(now));
        let wanted = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize + 1;
        let mut found: Vec<IndexedDeadLetter> = Vec::new();
        let mut day = day_of(from_millis(after_ms.max(millis(since)))?);
        let tenant_days_from = self.tenant_dead_letters_from().await?;
        while day <= last_day && found.len() < wanted {
            // A tenant's list reads the tenant's own partition of the day, where there is one.
            let result = match &filter.tenant {
                Some(tenant) if day >= tenant_days_from => {
                    self.run(
                        &self.statements.select_dead_letters_of_tenant_day,
                        (
                            tenant.as_str(),
                            day,
                            CqlTimestamp(after_ms),
                            &after_id,
                            SCAN,
                        ),
                    )
                    .await?
                }
                _ => {
                    self.run(
                        &self.statements.select_dead_letters_of_day,
                        (day, CqlTimestamp(after_ms), &after_id, SCAN),
                    )
                    .await?
                }
            };
            let rows = rows::<DayRow>(result)?;
            let exhausted = rows.len() < SCAN as usize;
            for (dead_at, id, endpoint_id, tenant, event_type, class) in rows {
                after_ms = dead_at.0;
                after_id.clone_from(&id);
                let cheap_match = filter
                    .endpoint_id
                    .is_none_or(|e| e.to_string() == endpoint_id)
                    && filter.tenant.as_ref().is_none_or(|t| t.as_str() == tenant)
                    && filter
                        .event_type
                        .as_ref()
                        .is_none_or(|t| t.as_str() == event_type)
                    && filter.class.is_none_or(|c| c.as_str() == class);
                if !cheap_match {
                    continue;
                }
                if let Some(stored) = self.stored_letter(&id).await?
                    && filter.matches(&stored.indexed.letter)
                {
                    found.push(stored.indexed);
                    if found.len() >= wanted {
                        break;
                    }
                }
            }
            if exhausted && found.len() < wanted {
                day += 1;
                after_id.clear();
                after_ms = after_ms.max(millis(since) - 1);
            }
        }
        let limit = wanted - 1;
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|d| {
                format!(
                    "{}:{}",
                    millis(d.letter.dead_lettered_at),
                    d.letter.task.delivery_id
                )
            })
        } else {
            None
        };
        Ok(Page { items: found, next })
    }
}
