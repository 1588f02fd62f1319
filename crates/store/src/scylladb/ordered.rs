//! Strict ordering's queues on ScyllaDB: one partition per endpoint, clustered by position, and
//! the endpoints with a queue in one partition per deliveries partition. Only the dispatcher
//! that owns the endpoint's deliveries partition writes its queue, so no write needs a condition.

use async_trait::async_trait;

use hookstream_model::ids::EndpointId;

use super::{ScyllaStore, first_row};
use crate::ordered::stored_endpoint;
use crate::{OrderedStore, QueuedTask, StoreError};

#[async_trait]
impl OrderedStore for ScyllaStore {
    async fn enqueue_task(&self, entry: &QueuedTask) -> Result<(), StoreError> {
        let endpoint = entry.endpoint_id.to_string();
        // The task first: a noted endpoint whose queue is empty is only a wasted read.
        self.run(
            &self.statements.insert_queued,
            (
                &endpoint,
                entry.position,
                entry.partition,
                entry.task.as_slice(),
            ),
        )
        .await?;
        self.run(
            &self.statements.insert_queued_endpoint,
            (entry.partition, &endpoint),
        )
        .await?;
        Ok(())
    }

    async fn queue_head(
        &self,
        endpoint: EndpointId,
        after: i64,
    ) -> Result<Option<QueuedTask>, StoreError> {
        let result = self
            .run(
                &self.statements.select_queue_head,
                (endpoint.to_string(), after),
            )
            .await?;
        first_row::<(String, i64, i32, Vec<u8>)>(result)?
            .map(|(endpoint_id, position, partition, task)| {
                Ok(QueuedTask {
                    endpoint_id: stored_endpoint(&endpoint_id)?,
                    partition,
                    position,
                    task,
                })
            })
            .transpose()
    }

    async fn dequeue_task(&self, endpoint: EndpointId, position: i64) -> Result<(), StoreError> {
        self.run(
            &self.statements.delete_queued,
            (endpoint.to_string(), position),
        )
        .await?;
        Ok(())
    }

    async fn queued_endpoints(&self, partition: i32) -> Result<Vec<EndpointId>, StoreError> {
        let ids = self
            .ids(&self.statements.select_queued_endpoints, (partition,))
            .await?;
        ids.iter().map(|id| stored_endpoint(id)).collect()
    }

    async fn queue_progress(
        &self,
        partition: i32,
        endpoint: EndpointId,
    ) -> Result<i64, StoreError> {
        let result = self
            .run(
                &self.statements.select_queue_progress,
                (partition, endpoint.to_string()),
            )
            .await?;
        Ok(first_row::<(Option<i64>,)>(result)?
            .and_then(|(after,)| after)
            .unwrap_or(-1))
    }

    async fn record_queue_progress(
        &self,
        partition: i32,
        endpoint: EndpointId,
        after: i64,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.update_queue_progress,
            (after, partition, endpoint.to_string()),
        )
        .await?;
        Ok(())
    }

    async fn forget_queued_endpoint(
        &self,
        partition: i32,
        endpoint: EndpointId,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.delete_queued_endpoint,
            (partition, endpoint.to_string()),
        )
        .await?;
        Ok(())
    }
}
