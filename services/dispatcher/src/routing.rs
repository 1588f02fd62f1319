//! Routing a failed delivery onward: to the retry tier of its next attempt, or to the DLQ.
//! Each write waits for Kafka's acknowledgement, since the task's offset is committed on the
//! strength of it.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use hookstream_kafka::Topics;
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::{CancellationToken, retry_until_ok};
use hookstream_runtime::telemetry;

use crate::worker::Interrupted;

/// Writes tasks to retry topics and dead letters to the DLQ.
pub struct Routing {
    pub producer: FutureProducer,
    pub topics: Topics,
    pub shutdown: CancellationToken,
}

impl Routing {
    /// Puts `task` (already carrying its attempt count and due time) on the retry tier `tier`.
    pub async fn to_retry_tier(&self, task: &DeliveryTask, tier: &str) -> Result<(), Interrupted> {
        let bytes = task.encode().map_err(|err| {
            // Encoding our own task cannot fail short of a bug; refuse to lose it silently.
            tracing::error!(delivery_id = %task.delivery_id, error = %err, "cannot encode retry task");
            Interrupted
        })?;
        self.send(&self.topics.retry(tier), &task.key(), &bytes)
            .await
    }

    /// Puts a dead letter on the DLQ topic.
    pub async fn to_dlq(&self, letter: &DeadLetter) -> Result<(), Interrupted> {
        let bytes = letter.encode().map_err(|err| {
            tracing::error!(delivery_id = %letter.task.delivery_id, error = %err, "cannot encode dead letter");
            Interrupted
        })?;
        self.send(&self.topics.dlq(), &letter.key(), &bytes).await
    }

    /// Sends until Kafka acknowledges, backing off between tries, or until shutdown: the task
    /// must reach its next topic before its offset may be committed. The record carries the
    /// attempt's trace context, so the next hop joins the delivery's trace.
    async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), Interrupted> {
        let headers = telemetry::headers_of(&tracing::Span::current());
        retry_until_ok(&self.shutdown, &format!("producing to {topic}"), || async {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            self.producer
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|(err, _)| err)
        })
        .await
        .map(|_| ())
        .ok_or(Interrupted)
    }
}
