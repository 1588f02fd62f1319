//! Accepting an event: idempotency, fan-out, durable store write, publish, acknowledge.
//!
//! The order makes a crash at any point safe. The event and its deliveries are stored first
//! (state `publishing`) in one transaction that also claims the idempotency key; then the tasks go
//! to Kafka; only after Kafka acknowledged them is the event marked `published` and the client
//! answered. A crash in between leaves a `publishing` event that a retry with the same key, or
//! the outbox sweep, publishes again under the same delivery ids.

use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use hookstream_model::event::{Event, IdempotencyWindow, PublishState};
use hookstream_model::ids::EventId;
use hookstream_model::names::{EventType, IdempotencyKey, Tenant};
use hookstream_store::{CreateEventOutcome, NewEvent, Store, StoreError};

use crate::fanout;
use crate::metrics;
use crate::publisher::{PublishError, TaskPublisher};

/// A validated request to accept an event.
#[derive(Debug, Clone)]
pub struct EventRequest {
    pub tenant: Tenant,
    pub event_type: EventType,
    pub payload: Value,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// What accepting an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A new event whose `deliveries` tasks Kafka acknowledged.
    New { id: EventId, deliveries: usize },
    /// The same request again within the idempotency window: nothing new was created.
    Repeat { id: EventId, deliveries: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("idempotency key already used for a different request (event {original})")]
    KeyConflict { original: EventId },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Accepts events; shared by every way events come in.
#[derive(Clone)]
pub struct Intake {
    pub store: Arc<dyn Store>,
    pub publisher: TaskPublisher,
    pub window: IdempotencyWindow,
}

impl Intake {
    pub async fn accept(&self, request: EventRequest) -> Result<Accepted, IntakeError> {
        let now = OffsetDateTime::now_utc();
        let endpoints = self
            .store
            .subscribed_endpoints(&request.tenant, &request.event_type)
            .await?;
        let event = Event {
            id: EventId::generate(),
            tenant: request.tenant,
            event_type: request.event_type,
            payload: request.payload,
            idempotency_key: request.idempotency_key,
            created_at: now,
        };
        let deliveries = fanout::deliveries_for(&event, &endpoints, now);
        let new = NewEvent { event, deliveries };
        match self.store.create_event(&new, self.window).await? {
            CreateEventOutcome::Created => {
                self.publish(&new.event, &new.deliveries).await?;
                metrics::EVENTS_ACCEPTED.with_label_values(&["new"]).inc();
                tracing::info!(
                    event_id = %new.event.id,
                    tenant = %new.event.tenant,
                    deliveries = new.deliveries.len(),
                    "event accepted"
                );
                Ok(Accepted::New {
                    id: new.event.id,
                    deliveries: new.deliveries.len(),
                })
            }
            CreateEventOutcome::Repeat {
                event,
                state,
                deliveries,
            } => {
                if state == PublishState::Publishing {
                    // The original request may have crashed before Kafka had its tasks.
                    self.publish(&event, &deliveries).await?;
                }
                metrics::EVENTS_ACCEPTED
                    .with_label_values(&["repeat"])
                    .inc();
                Ok(Accepted::Repeat {
                    id: event.id,
                    deliveries: deliveries.len(),
                })
            }
            CreateEventOutcome::Conflict { original } => {
                metrics::EVENTS_ACCEPTED
                    .with_label_values(&["conflict"])
                    .inc();
                Err(IntakeError::KeyConflict { original })
            }
        }
    }

    /// Publishes an event's tasks and marks it published. Once Kafka has the tasks the event is
    /// accepted, even if marking it fails: the outbox sweep then republishes, and the dispatcher
    /// does not resend what was delivered.
    pub async fn publish(
        &self,
        event: &Event,
        deliveries: &[hookstream_model::delivery::Delivery],
    ) -> Result<(), PublishError> {
        self.publisher
            .publish(&fanout::tasks_for(event, deliveries))
            .await?;
        if let Err(err) = self.store.mark_event_published(event.id).await {
            tracing::warn!(event_id = %event.id, error = %err,
                "tasks are on Kafka but the event could not be marked published; the outbox sweep will republish");
        }
        Ok(())
    }
}
