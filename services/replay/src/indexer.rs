//! Reads the dead-letter topic into the store and tells each dead letter as an operational
//! event (`hookstream.delivery.dead_lettered`). A record's offset is stored only after both, so
//! a crash re-reads, and indexing the same letter twice changes nothing (the event has the same
//! id again, which ingest's idempotency window takes once).

use std::sync::Arc;

use rdkafka::consumer::{DefaultConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::ops_event::{self, OpsEvent, OpsKind};
use hookstream_runtime::shutdown::{CancellationToken, retry_until_ok};
use hookstream_store::Store;

use crate::metrics;
use crate::ops_events::{Teller, Told};

pub struct Indexer {
    pub consumer: Arc<StreamConsumer<DefaultConsumerContext>>,
    pub store: Arc<dyn Store>,
    pub ops_events: Teller,
    pub shutdown: CancellationToken,
}

impl Indexer {
    /// Runs until shutdown; the caller commits and closes the consumer.
    pub async fn run(self) {
        loop {
            let message = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                message = self.consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    if !self.index(&message).await {
                        return;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "dead-letter consumer error"),
            }
        }
    }

    /// Writes one record's dead letter; false on shutdown before it was written.
    async fn index(&self, message: &BorrowedMessage<'_>) -> bool {
        let letter = message
            .payload()
            .ok_or_else(|| "an empty record".to_owned())
            .and_then(|bytes| DeadLetter::decode(bytes).map_err(|e| e.to_string()));
        match letter {
            Ok(letter) => {
                let written = retry_until_ok(&self.shutdown, "indexing a dead letter", || {
                    self.store.index_dead_letter(&letter)
                })
                .await;
                if written.is_none() {
                    return false;
                }
                metrics::INDEXED.inc();
                tracing::info!(delivery_id = %letter.task.delivery_id, endpoint_id = %letter.task.endpoint_id, class = letter.last_class.as_str(), "dead letter indexed");
                if !self.tell(&letter).await {
                    return false;
                }
            }
            Err(reason) => {
                // Not a dead letter this build can read (a newer writer?). It stays on the topic
                // where an operator can read it; indexing goes on behind it.
                metrics::UNREADABLE.inc();
                tracing::error!(partition = message.partition(), offset = message.offset(), %reason, "unreadable record on the dead-letter topic; not indexed");
            }
        }
        let stored = hookstream_kafka::store_position(
            &*self.consumer,
            message.topic(),
            message.partition(),
            message.offset() + 1,
        );
        if let Err(err) = stored {
            // Revoked meanwhile: the next owner reads it again, which is harmless.
            tracing::debug!(error = %err, "dead-letter offset not stored");
        }
        true
    }

    /// Publishes the letter's operational event, unless it is the dead letter of an operational
    /// webhook (an operator endpoint's failure would go round to it again). Kafka is given a
    /// few tries; an event it still does not take is counted and logged, and indexing goes on:
    /// dead letters must not wait on the ops-events topic. False on shutdown first.
    async fn tell(&self, letter: &DeadLetter) -> bool {
        let kind = OpsKind::DeliveryDeadLettered.event_type();
        if ops_event::is_operational(&letter.task.event_type) {
            metrics::OPS_EVENTS
                .with_label_values(&[kind, "not_told"])
                .inc();
            return true;
        }
        let event = OpsEvent::dead_lettered(letter);
        match self.ops_events.tell(&event, &self.shutdown).await {
            Told::Published => {
                metrics::OPS_EVENTS
                    .with_label_values(&[kind, "published"])
                    .inc();
                true
            }
            Told::Failed => {
                metrics::OPS_EVENTS
                    .with_label_values(&[kind, "failed"])
                    .inc();
                true
            }
            Told::Shutdown => false,
        }
    }
}
