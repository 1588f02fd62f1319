//! Routing a task onward: a failed delivery to the retry tier of its next attempt or to the DLQ,
//! a task that cannot be processed to the quarantine.
//! Each write waits for Kafka's acknowledgement, since the task's offset is committed on the
//! strength of it.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use hookstream_kafka::Topics;
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::{CancellationToken, retry_until_ok};
use hookstream_runtime::telemetry;

use crate::progress::Interrupted;

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
            Interrupted::Unprocessable(format!("cannot encode its retry task: {err}"))
        })?;
        let key = task.key();
        self.send(&self.topics.retry(tier), Some(key.as_bytes()), &bytes, None)
            .await
    }

    /// Puts a dead letter on the DLQ topic.
    pub async fn to_dlq(&self, letter: &DeadLetter) -> Result<(), Interrupted> {
        let bytes = letter.encode().map_err(|err| {
            tracing::error!(delivery_id = %letter.task.delivery_id, error = %err, "cannot encode dead letter");
            Interrupted::Unprocessable(format!("cannot encode its dead letter: {err}"))
        })?;
        let key = letter.key();
        self.send(&self.topics.dlq(), Some(key.as_bytes()), &bytes, None)
            .await
    }

    /// Puts a task that cannot be processed on the quarantine topic, as it was read (key,
    /// payload, headers) plus why and where from, to be put back once the cause is fixed.
    pub async fn to_quarantine(&self, task: QuarantinedTask) -> Result<(), Interrupted> {
        let mut headers = task.headers.unwrap_or_default();
        for (name, value) in [
            (QUARANTINE_REASON, task.reason.as_str()),
            (QUARANTINE_SOURCE, task.source.as_str()),
        ] {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let topic = self.topics.quarantine();
        self.send(&topic, task.key.as_deref(), &task.payload, Some(headers))
            .await
    }

    /// Sends until Kafka acknowledges, backing off between tries, or until shutdown: the task
    /// must reach its next topic before its offset may be committed. Unless given its own
    /// headers, the record carries the attempt's trace context, so the next hop joins the
    /// delivery's trace.
    async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), Interrupted> {
        let headers = headers.unwrap_or_else(|| telemetry::headers_of(&tracing::Span::current()));
        retry_until_ok(&self.shutdown, &format!("producing to {topic}"), || async {
            let mut record = FutureRecord::to(topic)
                .payload(payload)
                .headers(headers.clone());
            if let Some(key) = key {
                record = record.key(key);
            }
            self.producer
                .send(record, Duration::from_secs(5))
                .await
                .map_err(|(err, _)| err)
        })
        .await
        .map(|_| ())
        .ok_or(Interrupted::Shutdown)
    }
}

/// The header of a quarantined record that says why it is there.
pub const QUARANTINE_REASON: &str = "hookstream-quarantine-reason";
/// The header of a quarantined record that says where it was read: `topic/partition/offset`.
pub const QUARANTINE_SOURCE: &str = "hookstream-quarantine-source";

/// A record on its way to the quarantine.
pub struct QuarantinedTask {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
    pub reason: String,
    pub source: String,
}
