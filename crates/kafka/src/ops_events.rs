//! Writes operational events (see [`hookstream_model::ops_event`]) to the ops-events topic.

use std::time::Duration;

use rdkafka::message::Header;
use rdkafka::producer::{FutureProducer, FutureRecord};

use hookstream_model::ops_event::{CONTENT_TYPE, OpsEvent};

/// Kafka did not take an operational event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kafka did not acknowledge operational event {id}: {reason}")]
pub struct OpsPublishError {
    pub id: String,
    pub reason: String,
}

/// The longest one publish may take: callers (the health writer, the dead-letter indexer, an
/// API request) wait for it. One given up on may still reach the topic; told twice, an event
/// has the same id and is taken once.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes operational events, keyed by tenant.
#[derive(Clone)]
pub struct OpsEventPublisher {
    producer: FutureProducer,
    topic: String,
}

impl OpsEventPublisher {
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Returns once Kafka acknowledged the event (acks=all), or fails after
    /// [`PUBLISH_TIMEOUT`]. The record carries the current span's trace context, so the
    /// operator's webhook continues the trace that caused it.
    pub async fn publish(&self, event: &OpsEvent) -> Result<(), OpsPublishError> {
        let value = event.to_cloudevent().to_string();
        let headers = crate::trace_headers::headers_of(&tracing::Span::current()).insert(Header {
            key: "content-type",
            value: Some(CONTENT_TYPE),
        });
        let record = FutureRecord::to(&self.topic)
            .key(event.key())
            .payload(&value)
            .headers(headers);
        let failed = |reason: String| OpsPublishError {
            id: event.id.clone(),
            reason,
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.producer.send(record, PUBLISH_TIMEOUT))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((err, _))) => Err(failed(err.to_string())),
            Err(_) => Err(failed(format!(
                "not acknowledged within {PUBLISH_TIMEOUT:?}"
            ))),
        }
    }
}
