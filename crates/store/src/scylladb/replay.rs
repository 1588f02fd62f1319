//! Replay on ScyllaDB: not built yet. Every operation answers a clear error, so a replay
//! service pointed at ScyllaDB stops at start-up saying why instead of losing dead letters.

use async_trait::async_trait;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::ids::{BatchId, DeliveryId};
use hookstream_model::replay::{
    Batch, BatchItem, BatchStatus, DeadLetterFilter, IndexedDeadLetter,
};

use super::ScyllaStore;
use crate::{NewBatchItem, Page, PageRequest, ReplayStep, ReplayStore, StoreError};

fn not_built() -> StoreError {
    StoreError::Unsupported(
        "dead-letter replay is not built for the ScyllaDB store yet; use the embedded store",
    )
}

#[async_trait]
impl ReplayStore for ScyllaStore {
    async fn index_dead_letter(&self, _: &DeadLetter) -> Result<(), StoreError> {
        Err(not_built())
    }
    async fn get_dead_letter(
        &self,
        _: DeliveryId,
    ) -> Result<Option<IndexedDeadLetter>, StoreError> {
        Err(not_built())
    }
    async fn list_dead_letters(
        &self,
        _: &DeadLetterFilter,
        _: &PageRequest,
    ) -> Result<Page<IndexedDeadLetter>, StoreError> {
        Err(not_built())
    }
    async fn create_batch(&self, _: &Batch, _: &[NewBatchItem]) -> Result<(), StoreError> {
        Err(not_built())
    }
    async fn get_batch(&self, _: BatchId) -> Result<Option<Batch>, StoreError> {
        Err(not_built())
    }
    async fn list_batches(&self, _: &PageRequest) -> Result<Page<Batch>, StoreError> {
        Err(not_built())
    }
    async fn list_batch_items(
        &self,
        _: BatchId,
        _: &PageRequest,
    ) -> Result<Page<BatchItem>, StoreError> {
        Err(not_built())
    }
    async fn running_batches(&self) -> Result<Vec<BatchId>, StoreError> {
        Err(not_built())
    }
    async fn unfinished_items(
        &self,
        _: BatchId,
        _: Option<u32>,
        _: u32,
    ) -> Result<Vec<BatchItem>, StoreError> {
        Err(not_built())
    }
    async fn finish_batch(
        &self,
        _: BatchId,
        _: BatchStatus,
        _: Option<String>,
    ) -> Result<Option<Batch>, StoreError> {
        Err(not_built())
    }
    async fn replay_item(
        &self,
        _: BatchId,
        _: u32,
        _: DeliveryId,
    ) -> Result<ReplayStep, StoreError> {
        Err(not_built())
    }
    async fn mark_item_published(&self, _: BatchId, _: u32) -> Result<(), StoreError> {
        Err(not_built())
    }
}
