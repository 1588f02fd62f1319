//! The dead-letter index and replay batches on ScyllaDB.
//!
//! ScyllaDB has no transaction across partitions, so deciding a batch item is a sequence of
//! steps, each safe to repeat: the dead letter is claimed with a compare-and-set that records
//! the claiming item and the delivery it will create; the delivery is written (an upsert by id);
//! the item is marked created with a compare-and-set. A runner that dies between steps finds
//! its own claim when it tries again and finishes with the same delivery. The batch's status is
//! checked before the claim, so a cancel takes effect from the next item on.

use async_trait::async_trait;
use scylla::value::CqlTimestamp;
use time::OffsetDateTime;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::ids::{BatchId, DeliveryId};
use hookstream_model::names::Tenant;
use hookstream_model::replay::{
    Batch, BatchCounts, BatchItem, BatchStatus, DeadLetterFilter, EndpointState, IndexedDeadLetter,
    ItemOutcome, skip_reason,
};

use super::{ScyllaStore, applied, first_row, rows, ts};
use crate::raw::{self, RawBatch, RawBatchItem};
use crate::{NewBatchItem, Page, PageRequest, ReplayStep, ReplayStore, Store, StoreError};

/// Rows read per query when scanning a day of dead letters or a batch's items.
pub(super) const SCAN: i32 = 500;

type BatchRow = (
    String,
    String,
    String,
    bool,
    bool,
    String,
    Option<String>,
    CqlTimestamp,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<String>,
);
type ItemRow = (
    String,
    i32,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
);

fn raw_item(row: ItemRow) -> RawBatchItem {
    let (
        batch_id,
        position,
        dead_delivery_id,
        endpoint_id,
        outcome,
        skip_reason,
        delivery_id,
        published,
    ) = row;
    RawBatchItem {
        batch_id,
        position: u32::try_from(position).unwrap_or(0),
        dead_delivery_id,
        endpoint_id,
        outcome,
        skip_reason,
        delivery_id,
        published: published.unwrap_or(false),
    }
}

impl ScyllaStore {
    async fn item(&self, batch: &str, position: u32) -> Result<Option<BatchItem>, StoreError> {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        let result = self
            .run(&self.statements.select_item, (batch, position))
            .await?;
        first_row::<ItemRow>(result)?
            .map(|row| raw_item(row).decode())
            .transpose()
    }

    /// Items after `after`, in position order, that pass `keep`, until `limit` are found.
    async fn scan_items(
        &self,
        batch: &str,
        after: Option<u32>,
        limit: usize,
        keep: impl Fn(&BatchItem) -> bool,
    ) -> Result<Vec<BatchItem>, StoreError> {
        let mut cursor = after.map_or(-1, |p| i32::try_from(p).unwrap_or(i32::MAX));
        let mut found = Vec::new();
        loop {
            let result = self
                .run(&self.statements.select_items, (batch, cursor, SCAN))
                .await?;
            let rows = rows::<ItemRow>(result)?;
            let exhausted = rows.len() < SCAN as usize;
            for row in rows {
                cursor = row.1;
                let item = raw_item(row).decode()?;
                if keep(&item) {
                    found.push(item);
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
            if exhausted {
                return Ok(found);
            }
        }
    }

    async fn load_batch(&self, id: &str) -> Result<Option<Batch>, StoreError> {
        let result = self.run(&self.statements.select_batch, (id,)).await?;
        let Some(row) = first_row::<BatchRow>(result)? else {
            return Ok(None);
        };
        let mut counts = BatchCounts::default();
        for item in self.scan_items(id, None, usize::MAX, |_| true).await? {
            counts.add(&item.outcome, 1);
        }
        let (
            id,
            created_by,
            selection,
            dry_run,
            allow_repeat,
            status,
            error,
            created,
            updated,
            finished,
            tenant,
        ) = row;
        RawBatch {
            id,
            created_by,
            selection,
            dry_run,
            allow_repeat,
            status,
            error,
            created_at: created.0,
            updated_at: updated.0,
            finished_at: finished.map(|t| t.0),
            tenant,
        }
        .decode(counts)
        .map(Some)
    }

    async fn endpoint_state(
        &self,
        id: hookstream_model::ids::EndpointId,
    ) -> Result<EndpointState, StoreError> {
        Ok(match self.get_endpoint(id).await? {
            None => EndpointState::Deleted,
            Some(e) if e.disabled => EndpointState::Disabled,
            Some(_) => EndpointState::Live,
        })
    }

    /// Marks an item decided; if another runner decided it first, its outcome stands.
    async fn decide(
        &self,
        batch: &str,
        position: u32,
        outcome: ItemOutcome,
    ) -> Result<ReplayStep, StoreError> {
        let (kind, reason, delivery, _) = raw::outcome_columns(&outcome);
        let result = self
            .run(
                &self.statements.decide_item,
                (
                    self.ttl(),
                    kind,
                    reason,
                    delivery,
                    batch,
                    i32::try_from(position).unwrap_or(i32::MAX),
                ),
            )
            .await?;
        if !applied(result)? {
            let item = self
                .item(batch, position)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("{batch} item {position}")))?;
            return Ok(ReplayStep::Decided(item.outcome));
        }
        self.run(
            &self.statements.touch_batch,
            (self.ttl(), ts(OffsetDateTime::now_utc()), batch),
        )
        .await?;
        Ok(ReplayStep::Decided(outcome))
    }
}

#[async_trait]
impl ReplayStore for ScyllaStore {
    async fn index_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.index_letter(letter).await
    }

    async fn get_dead_letter(
        &self,
        id: DeliveryId,
    ) -> Result<Option<IndexedDeadLetter>, StoreError> {
        Ok(self
            .stored_letter(&id.to_string())
            .await?
            .map(|stored| stored.indexed))
    }

    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> Result<Page<IndexedDeadLetter>, StoreError> {
        self.dead_letters_page(filter, page).await
    }

    async fn create_batch(&self, batch: &Batch, items: &[NewBatchItem]) -> Result<(), StoreError> {
        let id = batch.id.to_string();
        let ttl = self.ttl();
        // Items first: a batch is visible (and runnable) only once all of them are written.
        for (position, item) in items.iter().enumerate() {
            let (kind, reason, delivery, published) = raw::outcome_columns(&item.outcome);
            self.run(
                &self.statements.insert_item,
                (
                    &id,
                    i32::try_from(position).unwrap_or(i32::MAX),
                    item.dead_delivery_id.to_string(),
                    item.endpoint_id.to_string(),
                    kind,
                    reason,
                    delivery,
                    published,
                    ttl,
                ),
            )
            .await?;
        }
        self.run(
            &self.statements.insert_batch,
            (
                &id,
                &batch.created_by,
                raw::selection_json(&batch.selection),
                batch.dry_run,
                batch.allow_repeat,
                batch.status.as_str(),
                batch.error.as_deref(),
                ts(batch.created_at),
                ts(batch.updated_at),
                batch.finished_at.map(ts),
                batch.tenant.as_ref().map(|t| t.as_str()),
                ttl,
            ),
        )
        .await?;
        self.run(&self.statements.insert_batch_id, (&id, ttl))
            .await?;
        if let Some(tenant) = &batch.tenant {
            self.run(
                &self.statements.insert_batch_id_of_tenant,
                (tenant.as_str(), &id, ttl),
            )
            .await?;
        }
        if batch.status == BatchStatus::Running {
            self.run(&self.statements.insert_running, (&id,)).await?;
        }
        Ok(())
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<Batch>, StoreError> {
        self.load_batch(&id.to_string()).await
    }

    async fn list_batches(
        &self,
        tenant: Option<&Tenant>,
        page: &PageRequest,
    ) -> Result<Page<Batch>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT);
        let before = page.after.clone().unwrap_or_else(|| "bat_~".to_owned());
        let fetch = i32::try_from(limit + 1).unwrap_or(i32::MAX);
        let ids = match tenant {
            None => {
                self.ids(&self.statements.select_batch_ids, (&before, fetch))
                    .await?
            }
            Some(tenant) => {
                self.ids(
                    &self.statements.select_batch_ids_of_tenant,
                    (tenant.as_str(), &before, fetch),
                )
                .await?
            }
        };
        let mut batches = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(batch) = self.load_batch(id).await? {
                batches.push(batch);
            }
        }
        let next = if batches.len() > limit as usize {
            batches.truncate(limit as usize);
            batches.last().map(|b| b.id.to_string())
        } else {
            None
        };
        Ok(Page {
            items: batches,
            next,
        })
    }

    async fn list_batch_items(
        &self,
        id: BatchId,
        page: &PageRequest,
    ) -> Result<Page<BatchItem>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let after = match &page.after {
            None => None,
            Some(cursor) => Some(
                cursor
                    .parse::<u32>()
                    .map_err(|_| StoreError::InvalidCursor(cursor.clone()))?,
            ),
        };
        let mut items = self
            .scan_items(&id.to_string(), after, limit + 1, |_| true)
            .await?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| i.position.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn running_batches(&self) -> Result<Vec<BatchId>, StoreError> {
        let ids = self.ids(&self.statements.select_running, ()).await?;
        ids.iter()
            .map(|id| BatchId::parse(id, "id").map_err(|e| StoreError::corrupt("batch id", e)))
            .collect()
    }

    async fn unfinished_items(
        &self,
        id: BatchId,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<BatchItem>, StoreError> {
        self.scan_items(&id.to_string(), after, limit as usize, |item| {
            matches!(
                item.outcome,
                ItemOutcome::Pending
                    | ItemOutcome::Created {
                        published: false,
                        ..
                    }
            )
        })
        .await
    }

    async fn finish_batch(
        &self,
        id: BatchId,
        status: BatchStatus,
        error: Option<String>,
    ) -> Result<Option<Batch>, StoreError> {
        let text = id.to_string();
        let now = ts(OffsetDateTime::now_utc());
        let result = self
            .run(
                &self.statements.finish_batch,
                (
                    self.ttl(),
                    status.as_str(),
                    error.as_deref(),
                    now,
                    now,
                    &text,
                ),
            )
            .await?;
        let batch = self.load_batch(&text).await?;
        if applied(result)?
            || batch
                .as_ref()
                .is_some_and(|b| b.status != BatchStatus::Running)
        {
            self.run(&self.statements.delete_running, (&text,)).await?;
        }
        Ok(batch)
    }

    async fn replay_item(
        &self,
        id: BatchId,
        position: u32,
        new_delivery: DeliveryId,
    ) -> Result<ReplayStep, StoreError> {
        let batch_id = id.to_string();
        let batch = self
            .load_batch_row(&batch_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(batch_id.clone()))?;
        let item = self
            .item(&batch_id, position)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("{batch_id} item {position}")))?;
        if item.outcome != ItemOutcome::Pending {
            return Ok(ReplayStep::Decided(item.outcome));
        }
        if batch.0 != BatchStatus::Running {
            return Ok(ReplayStep::BatchStopped(batch.0));
        }
        let claim = format!("{batch_id}:{position}");
        let dead = item.dead_delivery_id.to_string();
        // Claiming races with other runners only through the compare-and-set; a lost race is
        // read again and judged anew.
        for _ in 0..5 {
            let stored = self.stored_letter(&dead).await?;
            let ours = stored
                .as_ref()
                .filter(|s| s.last_claim.as_deref() == Some(claim.as_str()))
                .and_then(|s| s.last_claim_delivery.clone());
            let delivery_id = match ours {
                // Claimed by this item before a crash: finish with that delivery.
                Some(delivery) => DeliveryId::parse(&delivery, "last_claim_delivery")
                    .map_err(|e| StoreError::corrupt("dead letter claim", e))?,
                None => {
                    let state = self.endpoint_state(item.endpoint_id).await?;
                    let replays = stored.as_ref().map(|s| s.indexed.replays);
                    if let Some(reason) = skip_reason(replays, batch.1, state) {
                        return self
                            .decide(&batch_id, position, ItemOutcome::Skipped(reason))
                            .await;
                    }
                    let n = i32::try_from(replays.unwrap_or(0)).unwrap_or(i32::MAX);
                    let result = self
                        .run(
                            &self.statements.claim_dead_letter,
                            (
                                self.ttl(),
                                n + 1,
                                &claim,
                                new_delivery.to_string(),
                                &dead,
                                n,
                            ),
                        )
                        .await?;
                    if !applied(result)? {
                        continue;
                    }
                    new_delivery
                }
            };
            let Some(stored) = stored else {
                return Err(StoreError::corrupt("dead letter", "vanished while claimed"));
            };
            let replay = stored
                .indexed
                .letter
                .replay_delivery(delivery_id, OffsetDateTime::now_utc());
            self.write_delivery(&replay, self.delivery_ttl(replay.status), self.ttl())
                .await?;
            self.index_delivery(&replay, self.ttl()).await?;
            return self
                .decide(
                    &batch_id,
                    position,
                    ItemOutcome::Created {
                        delivery_id,
                        published: false,
                    },
                )
                .await;
        }
        Err(StoreError::Backend(
            "scylla: the dead letter kept changing hands; try again".into(),
        ))
    }

    async fn mark_item_published(&self, id: BatchId, position: u32) -> Result<(), StoreError> {
        self.run(
            &self.statements.publish_item,
            (
                self.ttl(),
                id.to_string(),
                i32::try_from(position).unwrap_or(i32::MAX),
            ),
        )
        .await?;
        Ok(())
    }
}

impl ScyllaStore {
    /// A batch's status and `allow_repeat`, without counting its items.
    async fn load_batch_row(&self, id: &str) -> Result<Option<(BatchStatus, bool)>, StoreError> {
        let result = self.run(&self.statements.select_batch, (id,)).await?;
        first_row::<BatchRow>(result)?
            .map(|row| {
                BatchStatus::parse(&row.5)
                    .map(|status| (status, row.4))
                    .ok_or_else(|| StoreError::corrupt("batch status", &row.5))
            })
            .transpose()
    }
}
