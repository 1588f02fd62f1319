//! Reads the source topics: each record becomes an event (or a rejection) before the next one
//! of its partition is read, and its offset is stored only then. Offsets therefore advance only
//! past records whose delivery tasks Kafka acknowledged, or that were written to the rejected
//! topic; a crash re-reads the rest, and the idempotency key (`ce_source` + `ce_id`) keeps
//! the re-read from creating a second event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{DefaultConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use hookstream_runtime::shutdown::{CancellationToken, retry_until_ok};
use hookstream_runtime::telemetry;
use tracing::Instrument;

use super::record::{Rejection, SourceRecord};
use super::{DecodeError, Decoder, Format};
use crate::intake::{Accepted, EventSource, Intake, IntakeError};
use crate::metrics;

/// The header of a rejected record that says why.
pub const REASON_HEADER: &str = "hookstream-rejected-reason";

/// What became of one record.
enum Outcome {
    Accepted(Accepted),
    Rejected(Rejection),
    /// An operational event left on the topic, for its readers only: `topic_only` (of no
    /// tenant), `no_operator` (its tenant has no endpoint for its type), `expired` (older than
    /// the idempotency window, which could no longer tell it from one already sent: read again
    /// after a consumer group was reset).
    Skipped(&'static str),
}

/// Everything the source loop needs.
pub struct SourceLoop {
    pub consumer: Arc<StreamConsumer<DefaultConsumerContext>>,
    pub formats: HashMap<String, Format>,
    pub decoder: Decoder,
    pub intake: Intake,
    pub producer: FutureProducer,
    pub rejected_topic: String,
    /// Operational events older than this are not sent (see [`Outcome::Skipped`]).
    pub operational_max_age: Duration,
    pub shutdown: CancellationToken,
}

impl SourceLoop {
    /// Runs until shutdown, then commits what was finished and leaves the group. False if
    /// leaving did not finish in time (see [`hookstream_kafka::commit_and_close`]): the process
    /// should then exit without waiting on librdkafka.
    pub async fn run(self) -> bool {
        // Each topic's outcomes exist from the start at 0, so rates (and the rejection alert)
        // work before the first record.
        for topic in self.formats.keys() {
            for outcome in ["accepted", "repeat", "rejected"] {
                metrics::SOURCE_RECORDS.with_label_values(&[topic.as_str(), outcome]);
            }
            if self.formats.get(topic) == Some(&Format::Operational) {
                for outcome in ["topic_only", "no_operator", "expired"] {
                    metrics::SOURCE_RECORDS.with_label_values(&[topic.as_str(), outcome]);
                }
            }
        }
        loop {
            let message = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::warn!(error = %err, "source consumer error");
                    continue;
                }
            };
            if !self.handle(&message).await {
                break;
            }
        }
        hookstream_kafka::commit_and_close(self.consumer).await
    }

    /// Turns one record into an event or a rejection and stores its offset. False on shutdown
    /// before the record was finished (it is read again after the restart).
    async fn handle(&self, message: &BorrowedMessage<'_>) -> bool {
        let topic = message.topic();
        let Some(&format) = self.formats.get(topic) else {
            return true;
        };
        if format == Format::Operational && self.too_old(message) {
            metrics::SOURCE_RECORDS
                .with_label_values(&[topic, "expired"])
                .inc();
            self.store_offset(topic, message.partition(), message.offset() + 1);
            return true;
        }
        let record = source_record(message);
        // A record that carries a trace context continues its producer's trace.
        let span = tracing::info_span!(
            target: telemetry::TARGET,
            "source_record",
            topic,
            partition = message.partition(),
            offset = message.offset(),
        );
        telemetry::continue_trace(&span, telemetry::context_of(message.headers()));
        let Some(outcome) = retry_until_ok(&self.shutdown, "taking in a source record", || {
            self.take_in(&record, format).instrument(span.clone())
        })
        .await
        else {
            return false;
        };
        match outcome {
            Outcome::Accepted(accepted) => {
                let outcome = match accepted {
                    Accepted::New { .. } => "accepted",
                    Accepted::Repeat { .. } => "repeat",
                };
                metrics::SOURCE_RECORDS
                    .with_label_values(&[topic, outcome])
                    .inc();
            }
            Outcome::Skipped(why) => {
                metrics::SOURCE_RECORDS
                    .with_label_values(&[topic, why])
                    .inc();
            }
            Outcome::Rejected(reason) => {
                tracing::warn!(topic, partition = message.partition(), offset = message.offset(), %reason, "source record rejected");
                let sent = retry_until_ok(&self.shutdown, "writing a rejected record", || {
                    self.reject(message, &reason)
                })
                .await;
                if sent.is_none() {
                    return false;
                }
                metrics::SOURCE_RECORDS
                    .with_label_values(&[topic, "rejected"])
                    .inc();
            }
        }
        self.store_offset(topic, message.partition(), message.offset() + 1);
        true
    }

    /// One try: a permanent failure is an outcome (a rejection); only what may succeed when
    /// tried again (the store, Kafka, the schema registry) is an error.
    async fn take_in(&self, record: &SourceRecord, format: Format) -> Result<Outcome, String> {
        let request = match self.decoder.decode(record, format).await {
            Ok(request) => request,
            Err(DecodeError::Rejected(reason)) => return Ok(Outcome::Rejected(reason)),
            Err(DecodeError::Unavailable(reason)) => return Err(reason),
            Err(DecodeError::NoTenant) => return Ok(Outcome::Skipped("topic_only")),
        };
        let operational = request.source == EventSource::Operational;
        match self.intake.accept(request).await {
            Ok(accepted) => Ok(Outcome::Accepted(accepted)),
            Err(IntakeError::NoOperator) => Ok(Outcome::Skipped("no_operator")),
            // The same operational event told again with other details (a delivery
            // dead-lettered twice after a crash): the first was taken.
            Err(IntakeError::KeyConflict { original }) if operational => {
                Ok(Outcome::Accepted(Accepted::Repeat {
                    id: original,
                    deliveries: 0,
                }))
            }
            Err(IntakeError::KeyConflict { original }) => {
                Ok(Outcome::Rejected(Rejection::new(format!(
                    "ce_source and ce_id were used for a different event ({original}) within the idempotency window"
                ))))
            }
            // What fails however often it is tried is set aside: too large a fan-out, tasks
            // Kafka refuses as they are, a store row refused for good.
            Err(err @ IntakeError::FanOutTooLarge { .. }) => {
                Ok(Outcome::Rejected(Rejection::new(err.to_string())))
            }
            Err(IntakeError::Publish(err)) if err.is_permanent() => {
                Ok(Outcome::Rejected(Rejection::new(err.to_string())))
            }
            Err(IntakeError::Store(err)) if !err.is_transient() => Ok(Outcome::Rejected(
                Rejection::new(format!("the store refused the event: {err}")),
            )),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Copies the record to the rejected topic with the reason and where it came from.
    async fn reject(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &Rejection,
    ) -> Result<(), String> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        for (key, value) in [
            (REASON_HEADER, reason.0.as_str()),
            ("hookstream-source-topic", message.topic()),
            ("hookstream-source-partition", partition.as_str()),
            ("hookstream-source-offset", offset.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.rejected_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(err, _)| err.to_string())
    }

    /// Whether the record was written longer ago than [`Self::operational_max_age`].
    fn too_old(&self, message: &BorrowedMessage<'_>) -> bool {
        let Some(written_ms) = message.timestamp().to_millis() else {
            return false;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let max_age_ms = self.operational_max_age.as_millis();
        u128::try_from(written_ms).is_ok_and(|written| now_ms.saturating_sub(written) > max_age_ms)
    }

    fn store_offset(&self, topic: &str, partition: i32, next: i64) {
        if let Err(err) = hookstream_kafka::store_position(&*self.consumer, topic, partition, next)
        {
            // The partition was just revoked; its next owner re-reads, and the idempotency
            // key keeps that from creating a second event.
            tracing::debug!(topic, partition, error = %err, "offset not stored");
        }
    }
}

fn source_record(message: &BorrowedMessage<'_>) -> SourceRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    SourceRecord {
        headers,
        value: message.payload().map(<[u8]>::to_vec),
    }
}
