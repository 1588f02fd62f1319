//! Fan-out: one delivery, and one delivery task, per subscribed endpoint of an event.

use time::OffsetDateTime;

use hookstream_model::delivery::Delivery;
use hookstream_model::event::Event;
use hookstream_model::ids::{DeliveryId, EndpointId};
use hookstream_model::task::DeliveryTask;

/// A new `pending` delivery of `event` for each endpoint.
pub fn deliveries_for(
    event: &Event,
    endpoints: &[EndpointId],
    now: OffsetDateTime,
) -> Vec<Delivery> {
    endpoints
        .iter()
        .map(|endpoint| {
            Delivery::pending(
                DeliveryId::generate(),
                event.id,
                *endpoint,
                event.tenant.clone(),
                event.event_type.clone(),
                now,
            )
        })
        .collect()
}

/// The tasks that carry `deliveries` of `event` to the dispatcher.
pub fn tasks_for(event: &Event, deliveries: &[Delivery]) -> Vec<DeliveryTask> {
    let payload = event.payload.to_string();
    deliveries
        .iter()
        .map(|delivery| DeliveryTask {
            delivery_id: delivery.id,
            event_id: event.id,
            endpoint_id: delivery.endpoint_id,
            tenant: event.tenant.clone(),
            event_type: event.event_type.clone(),
            event_created_at: event.created_at,
            payload: payload.clone(),
            attempts_made: delivery.attempts,
            due_at: None,
        })
        .collect()
}

/// The tasks an event whose publish is not known to have landed still needs (an outbox
/// republish, an idempotent repeat). A delivery that made an attempt had its task on Kafka (that
/// is how it was attempted) and its successor (a retry task, a dead letter) written before the
/// attempt was counted: publishing it again would only make it skip its retry schedule. So only
/// deliveries never attempted are published again.
pub fn tasks_still_needed(event: &Event, deliveries: &[Delivery]) -> Vec<DeliveryTask> {
    let waiting: Vec<Delivery> = deliveries
        .iter()
        .filter(|d| d.attempts == 0 && !d.status.is_final())
        .cloned()
        .collect();
    tasks_for(event, &waiting)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use hookstream_model::ids::EventId;
    use hookstream_model::names::{EventType, Tenant};

    use super::*;

    #[test]
    fn one_delivery_and_one_task_per_endpoint() {
        let event = Event {
            id: EventId::generate(),
            tenant: Tenant::parse("acme", "t").unwrap(),
            event_type: EventType::parse("order.created", "t").unwrap(),
            payload: json!({"order": 7}),
            idempotency_key: None,
            created_at: OffsetDateTime::now_utc(),
        };
        let endpoints = [EndpointId::generate(), EndpointId::generate()];
        let deliveries = deliveries_for(&event, &endpoints, event.created_at);
        assert_eq!(deliveries.len(), 2);
        assert_ne!(deliveries[0].id, deliveries[1].id);
        assert!(
            deliveries
                .iter()
                .all(|d| d.status == hookstream_model::delivery::DeliveryStatus::Pending)
        );

        let tasks = tasks_for(&event, &deliveries);
        assert_eq!(tasks.len(), 2);
        for ((task, delivery), endpoint) in tasks.iter().zip(&deliveries).zip(&endpoints) {
            assert_eq!(task.delivery_id, delivery.id);
            assert_eq!(task.endpoint_id, *endpoint);
            assert_eq!(task.key(), endpoint.to_string());
            assert_eq!(task.payload, r#"{"order":7}"#);
        }
    }

    #[test]
    fn no_subscribers_means_no_deliveries() {
        let event = Event {
            id: EventId::generate(),
            tenant: Tenant::parse("acme", "t").unwrap(),
            event_type: EventType::parse("order.created", "t").unwrap(),
            payload: json!(null),
            idempotency_key: None,
            created_at: OffsetDateTime::now_utc(),
        };
        assert!(deliveries_for(&event, &[], event.created_at).is_empty());
    }
}
