//! Writes delivery tasks to the deliveries topic and waits until Kafka acknowledged all of them.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};

use hookstream_model::task::DeliveryTask;

/// Why tasks could not be published; the event stays in the outbox and is republished later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("encoding delivery task {delivery}: {reason}")]
    Encode { delivery: String, reason: String },
    #[error("kafka did not acknowledge delivery task {delivery}: {reason}")]
    Kafka {
        delivery: String,
        reason: String,
        /// The broker refused the record itself (too large, invalid): trying again cannot help.
        refused: bool,
    },
}

impl PublishError {
    /// Whether publishing these tasks again could succeed (Kafka down or slow) or never can
    /// (a task that does not encode, or a record the broker refuses as it is).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Encode { .. } => true,
            Self::Kafka { refused, .. } => *refused,
        }
    }
}

/// Errors that say the record itself is unacceptable, not that Kafka is unavailable.
fn refuses_the_record(err: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        err.rdkafka_error_code(),
        Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::InvalidRecord)
    )
}

/// Publishes delivery tasks keyed by endpoint id.
#[derive(Clone)]
pub struct TaskPublisher {
    producer: FutureProducer,
    topic: String,
}

impl TaskPublisher {
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Sends every task and returns once Kafka acknowledged all of them (acks=all), or with the
    /// first failure. Tasks already acknowledged when another fails stay on Kafka; republishing
    /// them is harmless because the dispatcher does not resend a delivered delivery. Each record
    /// carries the current span's trace context.
    pub async fn publish(&self, tasks: &[DeliveryTask]) -> Result<(), PublishError> {
        let mut encoded = Vec::with_capacity(tasks.len());
        for task in tasks {
            let bytes = task.encode().map_err(|e| PublishError::Encode {
                delivery: task.delivery_id.to_string(),
                reason: e.to_string(),
            })?;
            encoded.push((task.key(), bytes, task.delivery_id));
        }
        let headers = crate::trace_headers::headers_of(&tracing::Span::current());
        let sends = encoded.iter().map(|(key, bytes, delivery)| {
            let headers = headers.clone();
            async move {
                let record = FutureRecord::to(&self.topic)
                    .key(key)
                    .payload(bytes)
                    .headers(headers);
                // The queue wait is short: if librdkafka's local queue is full, fail fast and let
                // the client retry rather than hold the request open.
                self.producer
                    .send(record, Duration::from_secs(5))
                    .await
                    .map(|_| ())
                    .map_err(|(err, _)| PublishError::Kafka {
                        delivery: delivery.to_string(),
                        reason: err.to_string(),
                        refused: refuses_the_record(&err),
                    })
            }
        });
        join_all(sends).await.into_iter().collect()
    }
}
