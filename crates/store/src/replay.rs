//! The part of the store that replay uses: the dead-letter index and replay batches.

use async_trait::async_trait;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::ids::{BatchId, DeliveryId, EndpointId};
use hookstream_model::names::Tenant;
use hookstream_model::replay::{
    Batch, BatchItem, BatchStatus, DeadLetterFilter, IndexedDeadLetter, ItemOutcome,
};

use crate::{Page, PageRequest, StoreError};

/// One dead letter chosen for a batch, with what a dry run or the start already knows of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatchItem {
    pub dead_delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    /// `Pending` for a batch that runs; `WouldReplay` or `Skipped` in a dry run, or for a
    /// named delivery that is no dead letter.
    pub outcome: ItemOutcome,
}

/// What [`ReplayStore::replay_item`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayStep {
    /// The item's outcome now (the same as before if it was already decided).
    Decided(ItemOutcome),
    /// The batch is no longer running (cancelled): nothing was created.
    BatchStopped(BatchStatus),
}

#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Adds a dead letter to the index, or leaves it as it is if it is there already (the DLQ
    /// is read again after a crash); its replay count is kept.
    async fn index_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;
    async fn get_dead_letter(
        &self,
        id: DeliveryId,
    ) -> Result<Option<IndexedDeadLetter>, StoreError>;
    /// Dead letters in the order they died (then by delivery id).
    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> Result<Page<IndexedDeadLetter>, StoreError>;

    /// Records a batch and its items (positions in the order given). Counts are derived from
    /// the items; `batch.counts` is ignored.
    async fn create_batch(&self, batch: &Batch, items: &[NewBatchItem]) -> Result<(), StoreError>;
    /// A batch with its counts as they stand.
    async fn get_batch(&self, id: BatchId) -> Result<Option<Batch>, StoreError>;
    /// Batches, newest first: every batch, or only those of `tenant`.
    async fn list_batches(
        &self,
        tenant: Option<&Tenant>,
        page: &PageRequest,
    ) -> Result<Page<Batch>, StoreError>;
    /// A batch's items by position.
    async fn list_batch_items(
        &self,
        id: BatchId,
        page: &PageRequest,
    ) -> Result<Page<BatchItem>, StoreError>;
    /// The ids of batches that are running, oldest first.
    async fn running_batches(&self) -> Result<Vec<BatchId>, StoreError>;
    /// Items still to do, by position after `after`: pending, or created but not yet on Kafka.
    async fn unfinished_items(
        &self,
        id: BatchId,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<BatchItem>, StoreError>;
    /// Moves a running batch to `status` (cancelled, completed or failed, with `error`);
    /// returns the batch as it now stands, `None` if there is no such batch. A batch that is
    /// no longer running is left as it is.
    async fn finish_batch(
        &self,
        id: BatchId,
        status: BatchStatus,
        error: Option<String>,
    ) -> Result<Option<Batch>, StoreError>;
    /// Decides one pending item, atomically: skips it (no such dead letter, already replayed
    /// and repeats not allowed, endpoint deleted or disabled), or creates delivery
    /// `new_delivery` (pending, the dead letter's event and endpoint, see
    /// [`DeadLetter::replay_delivery`]), counts the replay on the dead letter and marks the item
    /// created. Nothing is created unless the batch is still running. An item already
    /// decided keeps its outcome, so a runner restarted after a crash never creates twice.
    async fn replay_item(
        &self,
        id: BatchId,
        position: u32,
        new_delivery: DeliveryId,
    ) -> Result<ReplayStep, StoreError>;
    /// Records that Kafka acknowledged the task of an item's new delivery.
    async fn mark_item_published(&self, id: BatchId, position: u32) -> Result<(), StoreError>;
}
