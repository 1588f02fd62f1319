//! Accepting an event: idempotency, fan-out, durable store write, publish, acknowledge.
//!
//! The order makes a crash at any point safe. The event and its deliveries are stored first
//! (state `publishing`) in one transaction that also claims the idempotency key; then the tasks go
//! to Kafka; only after Kafka acknowledged them is the client answered, and the event marked
//! `published` soon after ([`PublishedMarks`]). A crash in between leaves a `publishing` event
//! that a retry with the same key, or the outbox sweep, publishes again under the same delivery
//! ids.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use hookstream_model::delivery::Delivery;
use hookstream_model::endpoint::Subscription;
use hookstream_model::event::{Event, IdempotencyWindow, PublishState};
use hookstream_model::ids::{EndpointId, EventId};
use hookstream_model::names::{EventType, IdempotencyKey, Tenant};
use hookstream_model::task::DeliveryTask;
use hookstream_store::{CreateEventOutcome, NewEvent, Store, StoreError};

use crate::fanout;
use crate::metrics;
use crate::published_marks::PublishedMarks;
use hookstream_kafka::task_publisher::{PublishError, TaskPublisher};
use hookstream_runtime::{labels, telemetry};

/// A validated request to accept an event.
#[derive(Debug, Clone)]
pub struct EventRequest {
    pub tenant: Tenant,
    pub event_type: EventType,
    pub payload: Value,
    pub idempotency_key: Option<IdempotencyKey>,
    /// How it came in, for the metrics.
    pub source: EventSource,
}

/// The ways events come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// `POST /v1/events` and its batch form.
    Http,
    /// A source topic.
    Kafka,
    /// Hookstream's own operational events (the ops-events topic).
    Operational,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Kafka => "kafka",
            Self::Operational => "operational",
        }
    }
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
    /// The payload times the endpoints it goes to is more than one request may make.
    #[error(
        "the event's payload ({payload} bytes) to its {endpoints} endpoints makes {total} bytes of webhooks, over the limit of {limit} per request"
    )]
    FanOutTooLarge {
        payload: usize,
        endpoints: usize,
        total: usize,
        limit: usize,
    },
    /// An operational event that no endpoint of its tenant takes: not stored, as nobody would
    /// be sent it.
    #[error("no endpoint of the tenant takes this operational event")]
    NoOperator,
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
    /// Most bytes of webhooks (payload × endpoints, summed over its events) one request may
    /// make: each task carries its own copy of the payload until Kafka has it.
    pub max_fanout_bytes: usize,
    /// Marks events published once Kafka has their tasks, gathered across requests.
    pub marks: PublishedMarks,
}

impl Intake {
    pub async fn accept(&self, request: EventRequest) -> Result<Accepted, IntakeError> {
        self.accept_batch(vec![request])
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Backend("no outcome for an event".into()).into()))
    }

    /// Accepts events together: one store transaction, one round of Kafka acknowledgements,
    /// one outcome per request in order. The outer error means nothing was stored. Its span
    /// starts the trace that every delivery task of these events carries.
    #[tracing::instrument(target = "hookstream::trace", name = "ingest", skip_all, fields(events = requests.len()))]
    pub async fn accept_batch(
        &self,
        requests: Vec<EventRequest>,
    ) -> Result<Vec<Result<Accepted, IntakeError>>, IntakeError> {
        let now = OffsetDateTime::now_utc();
        // Each tenant's subscriptions are read once for the whole batch, and each event type's
        // subscribers worked out once from them.
        let mut subscriptions: HashMap<Tenant, Vec<(EndpointId, Subscription)>> = HashMap::new();
        let mut subscribers: HashMap<(Tenant, EventType), Vec<EndpointId>> = HashMap::new();
        let mut news = Vec::with_capacity(requests.len());
        let mut sources = Vec::with_capacity(requests.len());
        // Per request, in order: an event refused before it was stored, or its place in `news`.
        let mut refused: Vec<Option<IntakeError>> = Vec::with_capacity(requests.len());
        let mut fanout_bytes = 0usize;
        for request in requests {
            let route = (request.tenant.clone(), request.event_type.clone());
            let endpoints = match subscribers.get(&route) {
                Some(endpoints) => endpoints,
                None => {
                    let of_tenant = match subscriptions.get(&request.tenant) {
                        Some(of_tenant) => of_tenant,
                        None => {
                            let read = self.store.subscriptions(&request.tenant).await?;
                            subscriptions.entry(request.tenant.clone()).or_insert(read)
                        }
                    };
                    let found = subscribed_to(of_tenant, &request.event_type);
                    subscribers.entry(route).or_insert(found)
                }
            };
            if request.source == EventSource::Operational && endpoints.is_empty() {
                refused.push(Some(IntakeError::NoOperator));
                continue;
            }
            let payload = json_len(&request.payload);
            let total = payload.saturating_mul(endpoints.len());
            if fanout_bytes.saturating_add(total) > self.max_fanout_bytes {
                metrics::EVENTS_ACCEPTED
                    .with_label_values(&["fanout_too_large"])
                    .inc();
                refused.push(Some(IntakeError::FanOutTooLarge {
                    payload,
                    endpoints: endpoints.len(),
                    total,
                    limit: self.max_fanout_bytes,
                }));
                continue;
            }
            fanout_bytes += total;
            refused.push(None);
            sources.push(request.source);
            let event = Event {
                id: EventId::generate(),
                tenant: request.tenant,
                event_type: request.event_type,
                payload: request.payload,
                idempotency_key: request.idempotency_key,
                created_at: now,
            };
            let deliveries = fanout::deliveries_for(&event, endpoints, now);
            news.push(NewEvent { event, deliveries });
        }
        let outcomes = self.store.create_events(&news, self.window).await?;

        // New events, and repeats whose original may have crashed before Kafka had its tasks.
        let mut to_publish: Vec<(&Event, &[Delivery])> = Vec::new();
        for (new, outcome) in news.iter().zip(&outcomes) {
            match outcome {
                CreateEventOutcome::Created => to_publish.push((&new.event, &new.deliveries)),
                CreateEventOutcome::Repeat {
                    event,
                    state: PublishState::Publishing,
                    deliveries,
                } => to_publish.push((event, deliveries)),
                _ => {}
            }
        }
        let published = self.publish_all(&to_publish).await;

        let mut stored = news
            .iter()
            .zip(outcomes)
            .zip(sources)
            .map(|((new, outcome), source)| match outcome {
                CreateEventOutcome::Created => {
                    published.clone().map_err(IntakeError::Publish)?;
                    metrics::EVENTS_ACCEPTED.with_label_values(&["new"]).inc();
                    metrics::EVENTS_INGESTED
                        .with_label_values(&[
                            source.as_str(),
                            labels::tenants().label(new.event.tenant.as_str()),
                        ])
                        .inc();
                    // Per event: DEBUG (the counts are in the metrics).
                    tracing::debug!(
                        event_id = %new.event.id,
                        tenant = %new.event.tenant,
                        deliveries = new.deliveries.len(),
                        trace_id = %telemetry::trace_id(&tracing::Span::current()),
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
                        published.clone().map_err(IntakeError::Publish)?;
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
            });
        // Each refused event in its place among the outcomes of the stored ones.
        Ok(refused
            .into_iter()
            .map(|refusal| match refusal {
                Some(err) => Err(err),
                None => stored.next().unwrap_or_else(|| {
                    Err(StoreError::Backend("no outcome for an event".into()).into())
                }),
            })
            .collect())
    }

    /// Publishes the tasks of several events together and marks them published.
    async fn publish_all(&self, events: &[(&Event, &[Delivery])]) -> Result<(), PublishError> {
        if events.is_empty() {
            return Ok(());
        }
        let tasks: Vec<DeliveryTask> = events
            .iter()
            .flat_map(|(event, deliveries)| fanout::tasks_still_needed(event, deliveries))
            .collect();
        self.publisher.publish(&tasks).await?;
        // The client need not wait for the mark: Kafka has the tasks. A mark that is lost (a
        // crash, a store error) only makes the outbox sweep republish after its grace period.
        self.marks
            .mark(events.iter().map(|(event, _)| event.id).collect());
        Ok(())
    }

    /// Publishes an event's tasks and has it marked published. Once Kafka has the tasks the
    /// event is accepted, even if marking it fails: the outbox sweep then republishes, and the
    /// dispatcher does not resend what was delivered.
    pub async fn publish(
        &self,
        event: &Event,
        deliveries: &[Delivery],
    ) -> Result<(), PublishError> {
        self.publish_all(&[(event, deliveries)]).await
    }
}

/// The endpoints among `subscriptions` that take events of `event_type`, in the same order.
fn subscribed_to(
    subscriptions: &[(EndpointId, Subscription)],
    event_type: &EventType,
) -> Vec<EndpointId> {
    subscriptions
        .iter()
        .filter(|(_, subscription)| subscription.matches(event_type))
        .map(|(id, _)| *id)
        .collect()
}

/// The length of `value` as JSON text, counted without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(usize::MAX, |()| count.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_length_is_that_of_the_text() {
        for value in [
            serde_json::json!(null),
            serde_json::json!({"a": [1, "é", {"b": true}]}),
        ] {
            assert_eq!(json_len(&value), value.to_string().len());
        }
    }

    #[test]
    fn an_event_type_goes_to_the_endpoints_subscribed_to_it_in_order() {
        let event_type = |text: &str| EventType::parse(text, "type").expect("a valid type");
        let subscription = |types: &[&str]| {
            let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
            Subscription::parse(&types, "event_types").expect("a valid subscription")
        };
        let (orders, everything, invoices) = (
            EndpointId::generate(),
            EndpointId::generate(),
            EndpointId::generate(),
        );
        let subscriptions = vec![
            (orders, subscription(&["order.created", "order.paid"])),
            (everything, subscription(&[])),
            (invoices, subscription(&["invoice.paid"])),
        ];
        assert_eq!(
            subscribed_to(&subscriptions, &event_type("order.paid")),
            vec![orders, everything]
        );
        assert_eq!(
            subscribed_to(&subscriptions, &event_type("invoice.paid")),
            vec![everything, invoices]
        );
        assert_eq!(
            subscribed_to(&subscriptions, &event_type("user.created")),
            vec![everything]
        );
    }
}
