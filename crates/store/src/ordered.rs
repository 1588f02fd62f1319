//! Strict ordering's queues: for each endpoint under `"ordering": "strict"`, the deliveries
//! still to send, in the order their tasks arrived. The dispatcher that owns the endpoint's
//! partition appends to the queue and works it head first, one delivery at a time, so the
//! order holds across retries, restarts and rebalances while the backlog stays out of memory.

use async_trait::async_trait;

use hookstream_model::ids::EndpointId;

use crate::StoreError;

/// One delivery task waiting in its endpoint's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    pub endpoint_id: EndpointId,
    /// The deliveries-topic partition the endpoint's tasks arrive on: its owner works the queue.
    pub partition: i32,
    /// Its place in the queue: the task's offset on that partition, so reading the same record
    /// again (after a crash) puts it back where it was rather than at the end.
    pub position: i64,
    /// The task as encoded for Kafka.
    pub task: Vec<u8>,
}

#[async_trait]
pub trait OrderedStore: Send + Sync + 'static {
    /// Puts a task in its endpoint's queue at its position, replacing what is there, and
    /// notes the endpoint among those with a queue on its partition.
    async fn enqueue_task(&self, entry: &QueuedTask) -> Result<(), StoreError>;
    /// The endpoint's first queued task after position `after` (pass `-1` for the very first):
    /// a caller that removed the head gives its position, so a backend keeping deletions as
    /// tombstones need not read past them.
    async fn queue_head(
        &self,
        endpoint: EndpointId,
        after: i64,
    ) -> Result<Option<QueuedTask>, StoreError>;
    /// Removes one task from the endpoint's queue; nothing if it is not there.
    async fn dequeue_task(&self, endpoint: EndpointId, position: i64) -> Result<(), StoreError>;
    /// The endpoints noted with a queue on the partition (some may have emptied since).
    async fn queued_endpoints(&self, partition: i32) -> Result<Vec<EndpointId>, StoreError>;
    /// The last position recorded as removed from the endpoint's queue on the partition, `-1`
    /// when none is: where a driver starts reading (see [`OrderedStore::queue_head`]).
    async fn queue_progress(&self, partition: i32, endpoint: EndpointId)
    -> Result<i64, StoreError>;
    /// Records the last position removed from the endpoint's queue on the partition.
    async fn record_queue_progress(
        &self,
        partition: i32,
        endpoint: EndpointId,
        after: i64,
    ) -> Result<(), StoreError>;
    /// Forgets that the endpoint has a queue on the partition (its endpoint is gone and its
    /// queue empty), with its progress.
    async fn forget_queued_endpoint(
        &self,
        partition: i32,
        endpoint: EndpointId,
    ) -> Result<(), StoreError>;
}

/// An endpoint id as stored in a queue table.
pub(crate) fn stored_endpoint(text: &str) -> Result<EndpointId, StoreError> {
    EndpointId::parse(text, "endpoint_id").map_err(|e| StoreError::corrupt("ordered queue", e))
}
