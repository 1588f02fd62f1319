//! Strict ordering's queues in the embedded store.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use hookstream_model::ids::EndpointId;

use super::SqliteStore;
use crate::ordered::stored_endpoint;
use crate::{OrderedStore, QueuedTask, StoreError};

#[async_trait]
impl OrderedStore for SqliteStore {
    async fn enqueue_task(&self, entry: &QueuedTask) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.write(move |conn| {
            let endpoint = entry.endpoint_id.to_string();
            conn.prepare_cached(
                "INSERT OR REPLACE INTO ordered_queue (endpoint_id, position, partition, task) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                endpoint,
                entry.position,
                entry.partition,
                entry.task
            ])?;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO ordered_endpoints (partition, endpoint_id) VALUES (?1, ?2)",
            )?
            .execute(params![entry.partition, endpoint])?;
            Ok(())
        })
        .await
    }

    async fn queue_head(
        &self,
        endpoint: EndpointId,
        after: i64,
    ) -> Result<Option<QueuedTask>, StoreError> {
        self.read(move |conn| {
            let row: Option<(i64, i32, Vec<u8>)> = conn
                .prepare_cached(
                    "SELECT position, partition, task FROM ordered_queue \
                     WHERE endpoint_id = ?1 AND position > ?2 ORDER BY position LIMIT 1",
                )?
                .query_row(params![endpoint.to_string(), after], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            Ok(row.map(|(position, partition, task)| QueuedTask {
                endpoint_id: endpoint,
                partition,
                position,
                task,
            }))
        })
        .await
    }

    async fn dequeue_task(&self, endpoint: EndpointId, position: i64) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM ordered_queue WHERE endpoint_id = ?1 AND position = ?2",
            )?
            .execute(params![endpoint.to_string(), position])?;
            Ok(())
        })
        .await
    }

    async fn queued_endpoints(&self, partition: i32) -> Result<Vec<EndpointId>, StoreError> {
        self.read(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached("SELECT endpoint_id FROM ordered_endpoints WHERE partition = ?1")?
                .query_map([partition], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter().map(|id| stored_endpoint(id)).collect()
        })
        .await
    }

    async fn queue_progress(
        &self,
        partition: i32,
        endpoint: EndpointId,
    ) -> Result<i64, StoreError> {
        self.read(move |conn| {
            let after: Option<i64> = conn
                .prepare_cached(
                    "SELECT last_removed FROM ordered_endpoints WHERE partition = ?1 AND endpoint_id = ?2",
                )?
                .query_row(params![partition, endpoint.to_string()], |row| row.get(0))
                .optional()?;
            Ok(after.unwrap_or(-1))
        })
        .await
    }

    async fn record_queue_progress(
        &self,
        partition: i32,
        endpoint: EndpointId,
        after: i64,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO ordered_endpoints (partition, endpoint_id, last_removed) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (partition, endpoint_id) DO UPDATE SET last_removed = excluded.last_removed",
            )?
            .execute(params![partition, endpoint.to_string(), after])?;
            Ok(())
        })
        .await
    }

    async fn forget_queued_endpoint(
        &self,
        partition: i32,
        endpoint: EndpointId,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM ordered_endpoints WHERE partition = ?1 AND endpoint_id = ?2",
            )?
            .execute(params![partition, endpoint.to_string()])?;
            Ok(())
        })
        .await
    }
}
